//! Attributes of the container process set by the init before it execs:
//! LSM labels, rlimits, personality, I/O priority, scheduler, CPU affinity
//! and the session keyring.

use std::ffi::CString;

use oci_spec::runtime::{LinuxSchedulerPolicy, PosixRlimitType};

use super::init::{last_err, R};
use super::Plan;

/// LSM labels, rlimits, personality, I/O priority and scheduler of the
/// process.
pub(super) fn set_process_attributes(plan: &Plan) -> R<()> {
    let process = plan.process;
    let linux = plan.spec.linux().as_ref();
    super::lsm::apply_apparmor_profile(process.apparmor_profile().as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    super::lsm::set_exec_label(process.selinux_label().as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    if let Some(rl) = process.rlimits() {
        for r in rl {
            let res = rlimit_resource(r.typ());
            let lim = libc::rlimit {
                rlim_cur: r.soft(),
                rlim_max: r.hard(),
            };
            // SAFETY: setrlimit with a valid struct.
            if unsafe { libc::setrlimit(res, &lim) } != 0 {
                return Err(last_err(format_args!(
                    "setting rlimit {:?} to {}/{}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
        }
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        let dom = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            _ => 0,
        };
        // SAFETY: personality with an integer persona.
        if unsafe { libc::personality(dom) } < 0 {
            return Err(last_err("personality"));
        }
    }
    if let Some(io) = process.io_priority() {
        let class = match io.class() {
            oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
            oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
            oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
        };
        let prio = (class << 13) | (io.priority() & 0x1fff);
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, prio).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } != 0 {
            return Err(last_err("setting ioPriority"));
        }
    }
    if let Some(s) = process.scheduler() {
        set_scheduler(s)?;
    }
    Ok(())
}

/// Joins a fresh session keyring named after the container (`_ses.<id>`).
pub(super) fn join_session_keyring(plan: &Plan) -> R<()> {
    let process = plan.process;
    let name = CString::new(format!("_ses.{}", plan.id)).map_err(|_| "bad id")?;
    let label = process.selinux_label().as_deref().unwrap_or("");
    super::lsm::set_key_label(label).map_err(|e| e.to_string())?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name).
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    if !label.is_empty() {
        super::lsm::reset_key_label();
    }
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Keyrings may be unavailable (ENOSYS) or restricted (EACCES in
        // user namespaces): runc ignores those too.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EACCES) | Some(libc::EPERM)
        ) {
            return Err(format!("joining a session keyring: {e}"));
        }
    }
    Ok(())
}

pub(super) fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub(super) fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> R<()> {
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        use oci_spec::runtime::LinuxSchedulerFlag::*;
        flags |= match f {
            SchedResetOnFork => 0x01,
            SchedFlagReclaim => 0x02,
            SchedFlagDLOverrun => 0x04,
            SchedFlagKeepPolicy => 0x08,
            SchedFlagKeepParams => 0x10,
            SchedFlagUtilClampMin => 0x20,
            SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(self, attr, 0) with a correctly sized struct.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(last_err("process.scheduler (sched_setattr)"));
    }
    Ok(())
}

/// Parses a cpu list ("0-3,6") and sets the affinity of the calling process.
pub(super) fn set_affinity(list: &str) -> R<()> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let bad = || format!("process.execCPUAffinity: \"{list}\" is not a cpu list");
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        for c in a..=b {
            set.set(c).map_err(|_| bad())?;
        }
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("process.execCPUAffinity \"{list}\": {e}"))
}
