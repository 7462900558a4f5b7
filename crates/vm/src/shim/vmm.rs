//! The agent channel of a VM and the daemons QEMU needs beside it
//! (virtiofsd for a virtio-fs rootfs, vhost-device-vsock for hybrid vsock).

use super::state_dir::remove_stale;
use super::{kill_group, tail, write_state_file, Plan};
use crate::channel::vsock::{self, HybridVsock, KernelVsock};
use crate::channel::{Channel, VirtioSerial};
use crate::qemu::ChannelDevice;
use crate::template;
use crate::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// The agent channel of one VM: the QEMU device, and for hybrid vsock the
/// backend to run (binary, vhost-user socket, hybrid socket).
pub(crate) struct ChannelPlan {
    pub(super) device: ChannelDevice,
    pub(super) backend: Option<(PathBuf, PathBuf, PathBuf)>,
    pub(super) describe: String,
}

/// Picks the channel (annotation `run.skiff.vm.channel`, `$SKIFF_VM_CHANNEL`;
/// virtio-serial by default) and, for vsock, the backend
/// ([`vsock::choose`]). Runs before the fork: errors fail `create` at once.
pub(super) fn channel_plan(plan: &Plan) -> Result<ChannelPlan, Error> {
    let wants = vsock::wants_vsock(&plan.spec["annotations"]).map_err(|message| Error::Spec {
        field: format!("annotations.{}", vsock::CHANNEL_ANNOTATION),
        message,
    })?;
    if !wants {
        return Ok(ChannelPlan {
            device: ChannelDevice::VirtioSerial,
            backend: None,
            describe: format!("virtio-serial (chardev {})", plan.vm.channel.display()),
        });
    }
    let port = vsock::AGENT_PORT;
    Ok(match vsock::choose().map_err(Error::NotFound)? {
        vsock::Backend::Kernel => {
            let cid = vsock::random_cid();
            ChannelPlan {
                device: ChannelDevice::VhostVsock { cid, port },
                backend: None,
                describe: format!(
                    "vsock (kernel {}, guest cid {cid}, port {port})",
                    vsock::VHOST_VSOCK_DEV
                ),
            }
        }
        vsock::Backend::VhostUser(bin) => {
            let socket = plan.state_dir.vsock_vhost_socket();
            let uds = plan.state_dir.vsock_socket();
            ChannelPlan {
                describe: format!(
                    "vsock (hybrid over vhost-user: {} on {}, host socket {}, port {port})",
                    bin.display(),
                    socket.display(),
                    uds.display()
                ),
                device: ChannelDevice::VhostUserVsock {
                    socket: socket.clone(),
                    port,
                },
                backend: Some((bin, socket, uds)),
            }
        }
    })
}

impl ChannelPlan {
    /// Connects to the agent (virtio-serial: QEMU's chardev at `serial`;
    /// hybrid vsock once the agent says on `console` that it listens).
    pub(super) fn connect(
        &self,
        serial: &Path,
        console: &Path,
        deadline: Duration,
        alive: impl FnMut() -> bool,
    ) -> io::Result<Box<dyn Channel>> {
        Ok(match (&self.device, &self.backend) {
            (ChannelDevice::VirtioSerial, _) => {
                Box::new(VirtioSerial::connect(serial, deadline, alive)?)
            }
            (ChannelDevice::VhostVsock { cid, port }, _) => {
                Box::new(KernelVsock::connect(*cid, *port, deadline, alive)?)
            }
            (ChannelDevice::VhostUserVsock { port, .. }, Some((_, _, uds))) => {
                let ready = || {
                    fs::read_to_string(console).is_ok_and(|c| c.contains(vsock::LISTENING_MARKER))
                };
                Box::new(HybridVsock::connect(uds, *port, deadline, alive, ready)?)
            }
            (ChannelDevice::VhostUserVsock { .. }, None) => {
                return Err(io::Error::other("hybrid vsock without a backend"))
            }
        })
    }
}

/// The `vhost-device-vsock` of a hybrid vsock VM (own process group,
/// killed with the shim): stopped, and its sockets removed, when dropped.
pub(super) struct VsockBackend {
    pub(super) child: Option<Child>,
    pub(super) files: [PathBuf; 2],
}

impl VsockBackend {
    /// Starts the backend for guest CID 3 (the CID only matters inside
    /// this VM) and waits for its vhost-user socket.
    pub(super) fn spawn(
        plan: &Plan,
        (bin, socket, uds): &(PathBuf, PathBuf, PathBuf),
        log: &Path,
    ) -> io::Result<Self> {
        remove_stale(socket);
        remove_stale(uds);
        let child = template::spawn_qemu(bin, &vsock::backend_args(3, socket, uds), log, None)?;
        write_state_file(&plan.state_dir.vsock_pid(), &child.id().to_string());
        let mut b = VsockBackend {
            child: Some(child),
            files: [socket.clone(), uds.clone()],
        };
        let t = Instant::now();
        while !socket.exists() {
            if !b.alive() {
                return Err(io::Error::other(format!(
                    "exited: {}",
                    tail(log, 1024).trim()
                )));
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other(format!(
                    "no socket {} after 10 s",
                    socket.display()
                )));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(b)
    }

    pub(super) fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub(super) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
        for f in &self.files {
            remove_stale(f);
        }
    }
}

impl Drop for VsockBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts virtiofsd exporting the rootfs on `sock` (own process group,
/// killed with the shim) and waits for its socket.
pub(super) fn spawn_virtiofsd(plan: &Plan, sock: &Path, log: &Path) -> io::Result<Child> {
    remove_stale(sock);
    let bin = plan
        .virtiofsd
        .as_ref()
        .ok_or_else(|| io::Error::other("no virtiofsd binary"))?;
    let args = vec![
        format!("--socket-path={}", sock.display()),
        "-o".into(),
        format!("source={}", plan.vm.rootfs.display()),
        "-o".into(),
        "cache=auto".into(),
        "-o".into(),
        "sandbox=namespace".into(),
    ];
    let mut child = template::spawn_qemu(bin, &args, log, None)?;
    write_state_file(&plan.state_dir.virtiofsd_pid(), &child.id().to_string());
    let t = Instant::now();
    while !sock.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(io::Error::other(format!(
                "exited ({st}): {}",
                tail(log, 1024).trim()
            )));
        }
        if t.elapsed() > Duration::from_secs(10) {
            kill_group(&mut child);
            return Err(io::Error::other("no socket after 10 s"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(child)
}
