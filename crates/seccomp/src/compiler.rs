//! Turns a [`Profile`] into a ready-to-load BPF program with libseccomp.
//!
//! Semantics follow runc (`libcontainer/seccomp/seccomp_linux.go`), which is what
//! profiles in the wild are written against:
//! - a syscall name libseccomp does not know is skipped (debug log), not an error;
//! - a rule whose resolved action equals the default action is skipped;
//! - the conditions of one rule are ANDed, except when two of them test the same
//!   argument index: then each condition becomes its own rule (so they are ORed),
//!   exactly as runc does;
//! - every listed architecture is added to the filter (the native one is always in);
//! - the `-ENOSYS` stub of [`crate::bpf`] is prepended unless the default action is
//!   permissive (ALLOW, LOG, TRACE) or the default errno already is ENOSYS.

use std::io::{Read, Seek};

use libseccomp::{ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use crate::bpf::{self, ArchMax};
use crate::profile::{Action, ActionKind, Flag, Op, Profile, ARCHS, FLAGS, ROOT};
use crate::Error;

/// Result of compilation.
pub(crate) struct Compiled {
    pub prog: Vec<libc::sock_filter>,
    pub flags: u32,
}

fn op_to_scmp(op: Op, value: u64) -> ScmpCompareOp {
    match op {
        Op::Ne => ScmpCompareOp::NotEqual,
        Op::Lt => ScmpCompareOp::Less,
        Op::Le => ScmpCompareOp::LessOrEqual,
        Op::Eq => ScmpCompareOp::Equal,
        Op::Ge => ScmpCompareOp::GreaterEqual,
        Op::Gt => ScmpCompareOp::Greater,
        Op::MaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

fn arch_name(a: ScmpArch) -> &'static str {
    ARCHS.iter().find(|(_, t)| *t == a).map_or("?", |(n, _)| n)
}

fn flag_name(f: Flag) -> &'static str {
    FLAGS.iter().find(|(_, t)| *t == f).map_or("?", |(n, _)| n)
}

/// Whether the linked libseccomp knows `arch` (whatever the native arch: a filter
/// cannot mix endiannesses, so the probe filter holds `arch` alone).
pub(crate) fn libseccomp_knows(arch: ScmpArch) -> bool {
    let native = ScmpArch::native();
    if arch == native || arch == ScmpArch::Native {
        return true;
    }
    ScmpFilterContext::new(libseccomp::ScmpAction::Allow)
        .and_then(|mut c| {
            c.remove_arch(native)?;
            c.add_arch(arch).map(|_| ())
        })
        .is_ok()
}

/// Kernel flag bit of a spec flag.
pub(crate) fn flag_bit(f: Flag) -> u32 {
    match f {
        Flag::Tsync => bpf::FLAG_TSYNC,
        Flag::Log => bpf::FLAG_LOG,
        Flag::SpecAllow => bpf::FLAG_SPEC_ALLOW,
        Flag::WaitKillableRecv => bpf::FLAG_WAIT_KILLABLE_RECV,
    }
}

/// The cheap, host-dependent part of compilation: which architectures, which
/// seccomp(2) flags. Always computed, even when the program comes from a cache.
pub(crate) struct Plan {
    pub archs: Vec<ScmpArch>,
    pub flags: u32,
}

/// Compiles `p`.
pub(crate) fn compile(p: &Profile) -> Result<Compiled, Error> {
    let plan = plan(p)?;
    let prog = generate(p, &plan)?;
    Ok(Compiled {
        prog,
        flags: plan.flags,
    })
}

/// Validates architectures and flags against libseccomp and the running kernel.
pub(crate) fn plan(p: &Profile) -> Result<Plan, Error> {
    // Architectures: the native one first, then the listed ones, deduplicated.
    let mut archs = vec![ScmpArch::native()];
    for &(i, arch) in &p.archs {
        let arch = if arch == ScmpArch::Native {
            ScmpArch::native()
        } else {
            arch
        };
        if archs.contains(&arch) {
            continue;
        }
        if !libseccomp_knows(arch) {
            return Err(Error::invalid(
                &format!("{ROOT}.architectures[{i}]"),
                format!(
                    "\"{}\" is not supported by the linked libseccomp {}",
                    arch_name(arch),
                    crate::libseccomp_version()
                ),
            ));
        }
        archs.push(arch);
    }

    // Flags: checked against the running kernel now, so a container never gets as
    // far as its init before failing.
    let notify = p.uses_notify();
    let mut flags = if notify { bpf::FLAG_NEW_LISTENER } else { 0 };
    for &(i, f) in &p.flags {
        let field = format!("{ROOT}.flags[{i}]");
        if f == Flag::WaitKillableRecv && !notify {
            // The kernel refuses this flag without a listener; it has no meaning then.
            log::debug!(
                "{field}: {} ignored: no rule uses SCMP_ACT_NOTIFY",
                flag_name(f)
            );
            continue;
        }
        let bit = flag_bit(f);
        if !bpf::kernel_supports_flag(bit) {
            return Err(Error::invalid(
                &field,
                format!(
                    "\"{}\" is not supported by the running kernel",
                    flag_name(f)
                ),
            ));
        }
        flags |= bit;
    }
    if flags & bpf::FLAG_TSYNC != 0 && notify {
        // TSYNC failures and NEW_LISTENER both use the return value; the kernel
        // insists on TSYNC_ESRCH to disambiguate (as libseccomp does).
        flags |= bpf::FLAG_TSYNC_ESRCH;
    }
    Ok(Plan { archs, flags })
}

/// The expensive part: libseccomp programs, linked, behind the `-ENOSYS` stub.
pub(crate) fn generate(p: &Profile, plan: &Plan) -> Result<Vec<libc::sock_filter>, Error> {
    let archs = &plan.archs;

    // One libseccomp program per architecture, linked behind our own arch
    // dispatcher: libseccomp 2.5 is superlinear in the number of architectures
    // (docker's 300-name profile: 25 ms for x86_64+x86+x32 in one filter, 9.5 ms
    // as three single-arch filters).
    let mut body = if archs.len() == 1 {
        compile_arch(p, archs[0])?
    } else {
        let mut parts = Vec::with_capacity(archs.len());
        for &arch in archs {
            let audit = bpf::audit_arch(arch).ok_or_else(|| {
                Error::invalid(
                    ROOT,
                    format!("no kernel AUDIT_ARCH value known for {}", arch_name(arch)),
                )
            })?;
            parts.push(bpf::ArchProgram {
                audit,
                x32: arch == ScmpArch::X32,
                prog: compile_arch(p, arch)?,
            });
        }
        bpf::link(&parts)
    };

    let mut prog = if wants_enosys_stub(p) {
        bpf::enosys_stub(&arch_maxima(p, archs))
    } else {
        Vec::new()
    };
    prog.append(&mut body);
    if prog.len() > bpf::MAX_INSNS {
        return Err(Error::invalid(
            ROOT,
            format!(
                "compiles to {} BPF instructions; the kernel accepts at most {}",
                prog.len(),
                bpf::MAX_INSNS
            ),
        ));
    }
    Ok(prog)
}

/// Builds and exports the libseccomp program for a single architecture.
fn compile_arch(p: &Profile, arch: ScmpArch) -> Result<Vec<libc::sock_filter>, Error> {
    let default = p.default_action;
    let mut ctx = ScmpFilterContext::new(default.to_scmp()).map_err(|e| {
        Error::libseccomp(&format!("{ROOT}.defaultAction"), "creating the filter", e)
    })?;
    let native = ScmpArch::native();
    if arch != native {
        ctx.remove_arch(native)
            .and_then(|c| c.add_arch(arch))
            .map_err(|e| {
                Error::libseccomp(
                    ROOT,
                    &format!("preparing the {} filter", arch_name(arch)),
                    e,
                )
            })?;
    }
    // Binary-tree dispatch pays off on long profiles; libseccomp <= 2.5.4 misbehaves
    // with it on tiny ones (same threshold as runc).
    if p.rules.len() > 32 {
        if let Err(e) = ctx.set_ctl_optimize(2) {
            log::debug!("seccomp binary tree optimization not available: {e}");
        }
    }
    for (i, rule) in p.rules.iter().enumerate() {
        add_rule(&mut ctx, i, rule, default)?;
    }

    // Export the program through a memfd (no reader thread needed, any size).
    let memfd =
        nix::sys::memfd::memfd_create(c"skiff-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::Io {
                what: "creating a memfd for the BPF export",
                source: e.into(),
            })?;
    ctx.export_bpf(&memfd)
        .map_err(|e| Error::libseccomp(ROOT, "exporting the BPF program", e))?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::Io {
            what: "reading the exported BPF program",
            source: e,
        })?;
    bpf::parse_program(&bytes).ok_or_else(|| {
        Error::invalid(
            ROOT,
            format!(
                "libseccomp exported a malformed program ({} bytes)",
                bytes.len()
            ),
        )
    })
}

/// Adds one `syscalls[i]` entry to the filter.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    i: usize,
    rule: &crate::profile::Rule,
    default: Action,
) -> Result<(), Error> {
    let field = format!("{ROOT}.syscalls[{i}]");
    if rule.action.to_scmp() == default.to_scmp() {
        log::debug!("{field}: action equals the default action, rule skipped");
        return Ok(());
    }
    let action = rule.action.to_scmp();
    let conds: Vec<ScmpArgCompare> = rule
        .args
        .iter()
        .map(|a| {
            let datum = if a.op == Op::MaskedEq {
                a.value_two
            } else {
                a.value
            };
            ScmpArgCompare::new(a.index, op_to_scmp(a.op, a.value), datum)
        })
        .collect();
    let mut seen = [0u8; 6];
    for a in &rule.args {
        seen[a.index as usize] += 1;
    }
    let split = seen.iter().any(|&n| n > 1);
    for name in &rule.names {
        let nr = match ScmpSyscall::from_name(name) {
            Ok(nr) => nr,
            Err(_) => {
                log::debug!("{field}: unknown syscall {name:?} ignored");
                continue;
            }
        };
        let res = if split {
            conds.iter().try_for_each(|c| {
                ctx.add_rule_conditional(action, nr, std::slice::from_ref(c))
                    .map(|_| ())
            })
        } else {
            ctx.add_rule_conditional(action, nr, &conds).map(|_| ())
        };
        res.map_err(|e| Error::libseccomp(&field, &format!("adding the rule for {name:?}"), e))?;
    }
    Ok(())
}

/// Whether the `-ENOSYS` stub applies (see module docs).
fn wants_enosys_stub(p: &Profile) -> bool {
    if p.default_errno_ret == Some(libc::ENOSYS as u64) {
        return false;
    }
    !matches!(
        p.default_action.kind,
        ActionKind::Allow | ActionKind::Log | ActionKind::Trace
    )
}

/// Largest syscall number named by the profile, per kernel audit arch.
fn arch_maxima(p: &Profile, archs: &[ScmpArch]) -> Vec<(u32, ArchMax)> {
    let mut out: Vec<(u32, ArchMax)> = Vec::new();
    for &arch in archs {
        let Some(audit) = bpf::audit_arch(arch) else {
            continue;
        };
        let mut max: Option<u32> = None;
        for name in p.rules.iter().flat_map(|r| r.names.iter()) {
            if let Ok(nr) = ScmpSyscall::from_name_by_arch(name, arch) {
                let nr = nr.as_raw_syscall();
                if nr >= 0 {
                    max = Some(max.map_or(nr as u32, |m| m.max(nr as u32)));
                }
            }
        }
        let Some(max) = max else {
            log::debug!(
                "seccomp: no syscalls of the profile exist on {}",
                arch_name(arch)
            );
            continue;
        };
        let entry = match out.iter_mut().find(|(a, _)| *a == audit) {
            Some((_, m)) => m,
            None => {
                out.push((audit, ArchMax::default()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        if arch == ScmpArch::X32 {
            entry.x32 = Some(max);
        } else {
            entry.main = Some(max);
        }
        entry.s390 = matches!(arch, ScmpArch::S390 | ScmpArch::S390X);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::emulate;

    /// libseccomp's own multi-arch filter, as before the per-arch split.
    fn combined(p: &Profile, archs: &[ScmpArch]) -> Vec<libc::sock_filter> {
        let mut ctx = ScmpFilterContext::new(p.default_action.to_scmp()).unwrap();
        for a in &archs[1..] {
            ctx.add_arch(*a).unwrap();
        }
        if p.rules.len() > 32 {
            ctx.set_ctl_optimize(2).unwrap();
        }
        for (i, r) in p.rules.iter().enumerate() {
            add_rule(&mut ctx, i, r, p.default_action).unwrap();
        }
        let memfd =
            nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::empty()).unwrap();
        ctx.export_bpf(&memfd).unwrap();
        let mut f = std::fs::File::from(memfd);
        let mut b = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut b).unwrap();
        bpf::parse_program(&b).unwrap()
    }

    /// The linked per-arch program for the same profile, without the stub.
    fn linked(p: &Profile, archs: &[ScmpArch]) -> Vec<libc::sock_filter> {
        let parts: Vec<_> = archs
            .iter()
            .map(|&a| bpf::ArchProgram {
                audit: bpf::audit_arch(a).unwrap(),
                x32: a == ScmpArch::X32,
                prog: compile_arch(p, a).unwrap(),
            })
            .collect();
        bpf::link(&parts)
    }

    fn profile() -> Profile {
        let mut names: Vec<String> = Vec::new();
        for nr in 0..400 {
            if let Ok(n) = ScmpSyscall::from(nr).get_name() {
                if nr % 3 != 0
                    && !["personality", "socket", "clone", "umask", "kill", "getpid"]
                        .contains(&n.as_str())
                {
                    names.push(n);
                }
            }
        }
        names.extend(["socketcall", "_llseek", "ipc", "no_such_syscall"].map(String::from));
        Profile::from_json(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_GT"}]},
                {"names": ["umask"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 18, "op": "SCMP_CMP_LE"}, {"index": 0, "value": 63, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn linked_program_matches_libseccomp_combined_filter() {
        if ScmpArch::native() != ScmpArch::X8664 {
            eprintln!("SKIP: the reference profile is written for x86_64");
            return;
        }
        let p = profile();
        let archs = [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32];
        let (a, b) = (combined(&p, &archs), linked(&p, &archs));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut argsets: Vec<[u64; 6]> = vec![
            [0; 6],
            [8, 0, 0, 0, 0, 0],
            [0xffff_ffff, 1, 2, 3, 4, 5],
            [10, 3, 0, 0, 0, 0],
            [10, 1, 0, 0, 0, 0],
            [18, 0, 0, 0, 0, 0],
            [63, 0, 0, 0, 0, 0],
            [0x1_0000_0008, 0, 0, 0, 0, 0],
            [0x7E02_0000, 0, 0, 0, 0, 0],
            [0x0001_1000, 0, 0, 0, 0, 0],
        ];
        for _ in 0..6 {
            argsets.push([next(), next() & 0xff, next(), next(), next(), next()]);
        }
        let mut checked = 0;
        let mut seen = std::collections::BTreeSet::new();
        for arch in [0xc000_003e, 0x4000_0003, 0xc000_00b7] {
            for base in [0u32, 0x4000_0000] {
                for nr in 0..600u32 {
                    for args in &argsets {
                        let (ra, rb) = (
                            emulate(&a, base | nr, arch, args),
                            emulate(&b, base | nr, arch, args),
                        );
                        assert_eq!(ra, rb, "arch {arch:#x} nr {:#x} args {args:x?}", base | nr);
                        seen.insert(ra);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50_000);
        // ALLOW, ERRNO(EPERM), ERRNO(97), TRAP, KILL_PROCESS, LOG, bad-arch KILL.
        assert!(seen.len() >= 7, "outcomes exercised: {seen:x?}");
    }

    #[test]
    fn enosys_stub_only_changes_numbers_above_the_profile() {
        let p = profile();
        let plan = plan(&p).unwrap();
        let full = generate(&p, &plan).unwrap();
        let body = linked(&p, &plan.archs);
        let maxima = arch_maxima(&p, &plan.archs);
        let enosys = 0x0005_0000 | libc::ENOSYS as u32;
        for (audit, m) in maxima {
            for nr in 0..700u32 {
                let with = emulate(&full, nr, audit, &[0; 6]);
                let without = emulate(&body, nr, audit, &[0; 6]);
                if m.main.is_some_and(|max| nr > max) {
                    assert_eq!(with, enosys, "arch {audit:#x} nr {nr}");
                } else {
                    assert_eq!(with, without, "arch {audit:#x} nr {nr}");
                }
            }
        }
    }
}
