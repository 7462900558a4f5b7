//! QEMU command line (microvm, direct kernel boot) and the KVM probe.
//!
//! Devices: one 8250 serial (the console, written to a log file), the agent
//! channel ([`ChannelDevice`]: by default a virtio-serial port `skiff.0`
//! backed by a unix-socket chardev; or virtio-vsock, through the kernel's
//! vhost-vsock or a vhost-user backend), and a virtio-9p share of the rootfs
//! (`mount_tag=rootfs`).
//!
//! Machine options follow the kernel: a kernel with virtio-mmio command-line
//! devices (the minimal one) boots with `acpi=off` (qboot firmware, no ACPI
//! table parsing, QEMU appends `virtio_mmio.device=` itself); Debian's kernel,
//! whose virtio drivers are modules without that option, keeps ACPI on so it
//! finds the devices.
//!
//! KVM is used only if a probe VM actually boots under it: on hosts where
//! `/dev/kvm` exists but cannot run stock guests (PVM here), QEMU aborts or
//! hangs, and TCG is used instead. The probe result is cached per host boot.

use crate::{cache_dir, io_err, Error};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Accelerator chosen for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// Name on the QEMU command line.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A host directory shared into the guest with 9p (a bind mount's source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// 9p mount tag.
    pub tag: String,
    /// Host directory.
    pub path: PathBuf,
    /// Exported read-only.
    pub readonly: bool,
}

/// Everything needed to launch one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Extra hypervisor parameters (spec `vm.hypervisor.parameters`).
    pub extra_args: Vec<String>,
    /// Uncompressed kernel.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Extra kernel parameters.
    pub kernel_params: Vec<String>,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Host directory shared as the rootfs.
    pub rootfs: PathBuf,
    /// Share the rootfs with virtio-fs through the virtiofsd listening on
    /// this socket (guest RAM then lives in a shared memfd); 9p when `None`.
    pub virtiofs: Option<PathBuf>,
    /// Unix socket path of the agent channel (QEMU listens).
    pub channel: PathBuf,
    /// Console log file.
    pub console_log: PathBuf,
    /// Verbose guest agent.
    pub debug: bool,
    /// The kernel takes virtio-mmio devices from its command line
    /// ([`crate::kernel::Kernel::cmdline_devices`]): boot without ACPI.
    pub cmdline_devices: bool,
    /// Directories shared for bind mounts.
    pub shares: Vec<Share>,
    /// A template VM or one restored from a template
    /// ([`crate::template`]): the agent gets `skiff.template` (it announces
    /// when it is ready to be saved) and debug travels in `hello`, not on
    /// the command line, so one template serves debug and quiet runs.
    pub template: bool,
}

/// The device carrying the agent channel ([`crate::channel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelDevice {
    /// virtio-serial port `skiff.0` behind a unix-socket chardev at
    /// [`VmConfig::channel`] (QEMU listens).
    VirtioSerial,
    /// virtio-vsock backed by the host kernel (`/dev/vhost-vsock`): the guest
    /// has CID `cid`, the agent listens on vsock port `port`.
    VhostVsock {
        /// Guest CID (unique on the host).
        cid: u32,
        /// Agent's vsock port.
        port: u32,
    },
    /// virtio-vsock served by a vhost-user backend (`vhost-device-vsock`)
    /// listening on `socket`; guest RAM becomes a shared memfd.
    VhostUserVsock {
        /// The backend's vhost-user socket (QEMU connects).
        socket: PathBuf,
        /// Agent's vsock port.
        port: u32,
    },
}

impl ChannelDevice {
    /// The agent's vsock port, if the channel is vsock.
    pub fn vsock_port(&self) -> Option<u32> {
        match self {
            ChannelDevice::VirtioSerial => None,
            ChannelDevice::VhostVsock { port, .. } | ChannelDevice::VhostUserVsock { port, .. } => {
                Some(*port)
            }
        }
    }
}

/// The host TSC frequency in kHz (from `/proc/cpuinfo`), for `tsc_early_khz`.
pub fn tsc_khz() -> Option<u64> {
    let info = fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// The kernel command line (agent channel: virtio-serial).
pub fn kernel_cmdline(cfg: &VmConfig) -> String {
    kernel_cmdline_with(cfg, &ChannelDevice::VirtioSerial)
}

/// The kernel command line for a VM whose agent channel is `chan`: a vsock
/// channel adds `skiff.vsock=<port>` (the agent then listens on AF_VSOCK
/// instead of opening the virtio-serial port).
pub fn kernel_cmdline_with(cfg: &VmConfig, chan: &ChannelDevice) -> String {
    let mut p: Vec<String> = [
        "console=ttyS0",
        "quiet",
        "panic=-1",
        "reboot=t",
        "no_timer_check",
        "rcupdate.rcu_expedited=1",
        "mitigations=off",
        "cryptomgr.notests",
        "8250.nr_uarts=1",
        // Keep the LOCK prefixes: patching them out of the whole kernel on a
        // 1-vCPU guest costs ~0.1 s under TCG (each patch flushes translations).
        "noreplace-smp",
        "rdinit=/init",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(khz) = tsc_khz() {
        p.push(format!("tsc_early_khz={khz}"));
    }
    if cfg.cmdline_devices {
        // The PIT ticks; calibrating the local APIC timer against it would
        // cost 100 ms (and fails without it).
        p.push("nolapic_timer".into());
    }
    if cfg.template {
        p.push("skiff.template".into());
    } else if cfg.debug {
        p.push("skiff.debug".into());
    }
    if let Some(port) = chan.vsock_port() {
        p.push(format!("skiff.vsock={port}"));
    }
    p.extend(cfg.kernel_params.iter().cloned());
    p.join(" ")
}

pub(crate) fn share_path(p: &Path) -> String {
    // QEMU's option parser treats ',' as a separator; ",," escapes it.
    p.to_string_lossy().replace(',', ",,")
}

/// QEMU arguments (without the binary) for `cfg`, agent channel on virtio-serial.
pub fn args(cfg: &VmConfig) -> Vec<String> {
    args_with(cfg, &ChannelDevice::VirtioSerial)
}

/// QEMU arguments (without the binary) for `cfg` with the agent channel on `chan`.
pub fn args_with(cfg: &VmConfig, chan: &ChannelDevice) -> Vec<String> {
    let cpu = match cfg.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let machine = if cfg.cmdline_devices {
        // No ACPI tables to parse and qboot instead of SeaBIOS; QEMU appends
        // `virtio_mmio.device=` for each device to the command line. Without
        // ACPI the kernel needs the PIT (behind the PIC) as its tick source
        // (see `nolapic_timer` below), and the RTC: probing a missing CMOS
        // clock costs ~2 s.
        "microvm,acpi=off,pit=on,pic=on,rtc=on"
    } else {
        "microvm,acpi=on,pit=off,pic=off,rtc=off"
    };
    let mut a: Vec<String> = vec![
        "-M".into(),
        machine.into(),
        "-accel".into(),
        cfg.accel.name().into(),
        "-cpu".into(),
        cpu.into(),
        "-m".into(),
        format!("{}M", cfg.memory_mib),
        "-smp".into(),
        cfg.vcpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        share_path(&cfg.kernel),
        "-initrd".into(),
        share_path(&cfg.initrd),
        "-append".into(),
        kernel_cmdline_with(cfg, chan),
        // Appended, not truncated: a VM restored from a template writes
        // after the template boot's messages.
        "-chardev".into(),
        format!(
            "file,id=console,path={},append=on",
            share_path(&cfg.console_log)
        ),
        "-serial".into(),
        "chardev:console".into(),
    ];
    match chan {
        ChannelDevice::VirtioSerial => a.extend([
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!(
                "socket,id=agent,path={},server=on,wait=off",
                share_path(&cfg.channel)
            ),
            "-device".into(),
            "virtserialport,chardev=agent,name=skiff.0".into(),
        ]),
        ChannelDevice::VhostVsock { cid, .. } => a.extend([
            "-device".into(),
            format!("vhost-vsock-device,id=agent,guest-cid={cid}"),
        ]),
        ChannelDevice::VhostUserVsock { socket, .. } => a.extend([
            "-chardev".into(),
            format!("socket,id=agent,path={}", share_path(socket)),
            "-device".into(),
            "vhost-user-vsock-device,id=agent-vsock,chardev=agent".into(),
        ]),
    }
    let vhost_user = cfg.virtiofs.is_some() || matches!(chan, ChannelDevice::VhostUserVsock { .. });
    if vhost_user {
        // vhost-user back-ends (virtiofsd, vhost-device-vsock) map guest
        // RAM, which must be shared; libvhost-user and the rust-vmm crates
        // refuse legacy virtio devices, microvm's virtio-mmio default.
        if let Some(i) = a.iter().position(|x| x == "-M") {
            a[i + 1] = format!("{},memory-backend=skiff-mem", a[i + 1]);
        }
        a.extend([
            "-object".into(),
            format!(
                "memory-backend-memfd,id=skiff-mem,size={}M,share=on",
                cfg.memory_mib
            ),
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
        ]);
    }
    match &cfg.virtiofs {
        None => a.extend([
            "-fsdev".into(),
            format!(
                "local,id=rootfs,path={},security_model=passthrough",
                share_path(&cfg.rootfs)
            ),
            "-device".into(),
            "virtio-9p-device,fsdev=rootfs,mount_tag=rootfs".into(),
        ]),
        Some(sock) => a.extend([
            "-chardev".into(),
            format!("socket,id=virtiofs,path={}", share_path(sock)),
            "-device".into(),
            "vhost-user-fs-device,chardev=virtiofs,tag=rootfs".into(),
        ]),
    }
    for sh in &cfg.shares {
        a.push("-fsdev".into());
        a.push(format!(
            "local,id={},path={},security_model=passthrough{}",
            sh.tag,
            share_path(&sh.path),
            if sh.readonly { ",readonly=on" } else { "" }
        ));
        a.push("-device".into());
        a.push(format!(
            "virtio-9p-device,fsdev={},mount_tag={}",
            sh.tag, sh.tag
        ));
    }
    a.extend(cfg.extra_args.iter().cloned());
    a
}

/// Picks the accelerator: `$SKIFF_VM_ACCEL` (kvm|tcg) if set, TCG without a
/// usable `/dev/kvm`, else the (cached) result of booting a probe VM under KVM.
pub fn choose_accel(
    qemu: &Path,
    kernel: &crate::kernel::Kernel,
    initrd: &Path,
) -> Result<Accel, Error> {
    match std::env::var("SKIFF_VM_ACCEL").as_deref() {
        Ok("kvm") => return Ok(Accel::Kvm),
        Ok("tcg") => return Ok(Accel::Tcg),
        _ => {}
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok(Accel::Tcg);
    }
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let marker = cache_dir()?.join(format!("kvm-probe-{}", boot_id.trim()));
    if let Ok(s) = fs::read_to_string(&marker) {
        return Ok(if s.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        });
    }
    let accel = if probe_kvm(qemu, kernel, initrd)? {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    crate::write_atomic(&marker, accel.name().as_bytes())?;
    Ok(accel)
}

/// Boots the agent in probe mode under KVM; true if it reported in time.
fn probe_kvm(qemu: &Path, kernel: &crate::kernel::Kernel, initrd: &Path) -> Result<bool, Error> {
    let dir = cache_dir()?;
    let log = dir.join(format!("kvm-probe-{}.log", std::process::id()));
    let cfg = VmConfig {
        qemu: qemu.into(),
        extra_args: vec![],
        kernel: kernel.vmlinux.clone(),
        initrd: initrd.into(),
        kernel_params: vec!["skiff.probe".into()],
        memory_mib: 256,
        vcpus: 1,
        accel: Accel::Kvm,
        rootfs: dir.clone(),
        virtiofs: None,
        channel: dir.join(format!("kvm-probe-{}.sock", std::process::id())),
        console_log: log.clone(),
        debug: false,
        cmdline_devices: kernel.cmdline_devices,
        shares: Vec::new(),
        template: false,
    };
    let mut child = Command::new(qemu)
        .args(args(&cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io_err(&format!("spawn {}", qemu.display()), e))?;
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(5) {
        if fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("SKIFF-PROBE-OK")
        {
            ok = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            ok = fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("SKIFF-PROBE-OK");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(&log);
    let _ = fs::remove_file(&cfg.channel);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(virtiofs: Option<PathBuf>) -> VmConfig {
        VmConfig {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            extra_args: vec![],
            kernel: "/k".into(),
            initrd: "/i".into(),
            kernel_params: vec![],
            memory_mib: 320,
            vcpus: 1,
            accel: Accel::Tcg,
            rootfs: "/b/rootfs,x".into(),
            virtiofs,
            channel: "/s/agent.sock".into(),
            console_log: "/s/console.log".into(),
            debug: false,
            cmdline_devices: true,
            shares: vec![],
            template: false,
        }
    }

    #[test]
    fn rootfs_is_9p_or_virtiofs_with_shared_ram() {
        let p9 = args(&cfg(None)).join(" ");
        assert!(p9.contains("-fsdev local,id=rootfs,path=/b/rootfs,,x,security_model=passthrough"));
        assert!(p9.contains("virtio-9p-device,fsdev=rootfs,mount_tag=rootfs"));
        assert!(!p9.contains("memory-backend"));
        assert!(p9.contains(
            "-chardev file,id=console,path=/s/console.log,append=on -serial chardev:console"
        ));
        let vfs = args(&cfg(Some("/s/virtiofs.sock".into()))).join(" ");
        assert!(!vfs.contains("virtio-9p-device,fsdev=rootfs"));
        assert!(vfs.contains("microvm,acpi=off,pit=on,pic=on,rtc=on,memory-backend=skiff-mem"));
        assert!(vfs.contains("memory-backend-memfd,id=skiff-mem,size=320M,share=on"));
        assert!(vfs.contains("-chardev socket,id=virtiofs,path=/s/virtiofs.sock"));
        assert!(vfs.contains("vhost-user-fs-device,chardev=virtiofs,tag=rootfs"));
        assert!(vfs.contains("-global virtio-mmio.force-legacy=false"));
    }

    #[test]
    fn vsock_channels_replace_virtio_serial() {
        let c = cfg(None);
        let serial = args(&c).join(" ");
        assert!(serial.contains("virtserialport,chardev=agent,name=skiff.0"));
        assert!(!serial.contains("vsock"));
        assert_eq!(args(&c), args_with(&c, &ChannelDevice::VirtioSerial));
        let hybrid = ChannelDevice::VhostUserVsock {
            socket: "/s/vsock-vhost.sock".into(),
            port: 1024,
        };
        let h = args_with(&c, &hybrid).join(" ");
        assert!(!h.contains("virtio-serial-device") && !h.contains("virtserialport"));
        assert!(h.contains("-chardev socket,id=agent,path=/s/vsock-vhost.sock"));
        assert!(h.contains("vhost-user-vsock-device,id=agent-vsock,chardev=agent"));
        assert!(h.contains("memory-backend-memfd,id=skiff-mem,size=320M,share=on"));
        assert!(h.contains("memory-backend=skiff-mem"));
        assert!(h.contains("-global virtio-mmio.force-legacy=false"));
        assert!(h.contains("skiff.vsock=1024"));
        // With virtio-fs too: one shared RAM backend, one -global.
        let mut both = cfg(Some("/s/virtiofs.sock".into()));
        both.memory_mib = 256;
        let b = args_with(&both, &hybrid).join(" ");
        assert_eq!(b.matches("memory-backend-memfd").count(), 1);
        assert_eq!(b.matches("force-legacy=false").count(), 1);
        assert!(b.contains("vhost-user-fs-device,chardev=virtiofs,tag=rootfs"));
        let k = args_with(
            &c,
            &ChannelDevice::VhostVsock {
                cid: 77,
                port: 1024,
            },
        )
        .join(" ");
        assert!(k.contains("-device vhost-vsock-device,id=agent,guest-cid=77"));
        assert!(!k.contains("virtserialport") && !k.contains("memory-backend"));
        assert!(
            kernel_cmdline_with(&c, &ChannelDevice::VhostVsock { cid: 77, port: 9 })
                .contains("skiff.vsock=9")
        );
        assert!(!kernel_cmdline(&c).contains("skiff.vsock"));
    }

    #[test]
    fn template_vms_announce_themselves_and_take_debug_from_hello() {
        let mut c = cfg(None);
        c.debug = true;
        assert!(kernel_cmdline(&c).contains("skiff.debug"));
        c.template = true;
        let line = kernel_cmdline(&c);
        assert!(line.contains("skiff.template"));
        assert!(!line.contains("skiff.debug"));
    }
}
