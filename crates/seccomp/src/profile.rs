//! The validated, normalised form of `linux.seccomp` that the compiler works on.
//!
//! Two front doors lead here: the typed [`oci_spec::runtime::LinuxSeccomp`] (what the
//! runtime already has after parsing `config.json`) and the raw JSON object (which can
//! hold values oci-spec 0.8 cannot represent, such as
//! `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` or `SCMP_ARCH_LOONGARCH64`, and which lets
//! every error name the exact field, e.g. `linux.seccomp.syscalls[3].action`).
//! Semantic checks that do not depend on the input format live in [`Profile::check`].

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde_json::Value;

use crate::Error;

/// Prefix of every field path in error messages.
pub(crate) const ROOT: &str = "linux.seccomp";

/// A seccomp action without its errno/trace value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionKind {
    KillThread,
    KillProcess,
    Trap,
    Errno,
    Trace,
    Allow,
    Log,
    Notify,
}

/// Every action name of the runtime spec, with its meaning.
pub(crate) const ACTIONS: &[(&str, ActionKind)] = &[
    ("SCMP_ACT_KILL", ActionKind::KillThread),
    ("SCMP_ACT_KILL_PROCESS", ActionKind::KillProcess),
    ("SCMP_ACT_KILL_THREAD", ActionKind::KillThread),
    ("SCMP_ACT_TRAP", ActionKind::Trap),
    ("SCMP_ACT_ERRNO", ActionKind::Errno),
    ("SCMP_ACT_TRACE", ActionKind::Trace),
    ("SCMP_ACT_ALLOW", ActionKind::Allow),
    ("SCMP_ACT_LOG", ActionKind::Log),
    ("SCMP_ACT_NOTIFY", ActionKind::Notify),
];

/// Every comparison operator of the runtime spec.
pub(crate) const OPERATORS: &[(&str, Op)] = &[
    ("SCMP_CMP_NE", Op::Ne),
    ("SCMP_CMP_LT", Op::Lt),
    ("SCMP_CMP_LE", Op::Le),
    ("SCMP_CMP_EQ", Op::Eq),
    ("SCMP_CMP_GE", Op::Ge),
    ("SCMP_CMP_GT", Op::Gt),
    ("SCMP_CMP_MASKED_EQ", Op::MaskedEq),
];

/// Every filter flag of the runtime spec.
pub(crate) const FLAGS: &[(&str, Flag)] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", Flag::Tsync),
    ("SECCOMP_FILTER_FLAG_LOG", Flag::Log),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", Flag::SpecAllow),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        Flag::WaitKillableRecv,
    ),
];

/// Every architecture name of the runtime spec (libseccomp 2.6 list), mapped to
/// the libseccomp token. Whether the linked libseccomp knows it is checked later.
pub(crate) const ARCHS: &[(&str, libseccomp::ScmpArch)] = {
    use libseccomp::ScmpArch as A;
    &[
        ("SCMP_ARCH_NATIVE", A::Native),
        ("SCMP_ARCH_X86", A::X86),
        ("SCMP_ARCH_X86_64", A::X8664),
        ("SCMP_ARCH_X32", A::X32),
        ("SCMP_ARCH_ARM", A::Arm),
        ("SCMP_ARCH_AARCH64", A::Aarch64),
        ("SCMP_ARCH_MIPS", A::Mips),
        ("SCMP_ARCH_MIPS64", A::Mips64),
        ("SCMP_ARCH_MIPS64N32", A::Mips64N32),
        ("SCMP_ARCH_MIPSEL", A::Mipsel),
        ("SCMP_ARCH_MIPSEL64", A::Mipsel64),
        ("SCMP_ARCH_MIPSEL64N32", A::Mipsel64N32),
        ("SCMP_ARCH_PPC", A::Ppc),
        ("SCMP_ARCH_PPC64", A::Ppc64),
        ("SCMP_ARCH_PPC64LE", A::Ppc64Le),
        ("SCMP_ARCH_S390", A::S390),
        ("SCMP_ARCH_S390X", A::S390X),
        ("SCMP_ARCH_PARISC", A::Parisc),
        ("SCMP_ARCH_PARISC64", A::Parisc64),
        ("SCMP_ARCH_RISCV64", A::Riscv64),
        ("SCMP_ARCH_LOONGARCH64", A::Loongarch64),
        ("SCMP_ARCH_M68K", A::M68k),
        ("SCMP_ARCH_SH", A::Sh),
        ("SCMP_ARCH_SHEB", A::Sheb),
    ]
};

/// A seccomp filter flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flag {
    Tsync,
    Log,
    SpecAllow,
    WaitKillableRecv,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// An action with its resolved return value (errno for ERRNO, message for TRACE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Action {
    pub kind: ActionKind,
    /// errno (ERRNO) or trace message (TRACE); `None` for the other actions.
    pub ret: Option<u16>,
}

impl Action {
    /// Builds an action, applying the spec's `EPERM` default and refusing a return
    /// value on actions that cannot carry one (config-linux.md: "the runtime MUST
    /// print an error and fail").
    fn new(
        kind: ActionKind,
        ret: Option<u64>,
        field: &str,
        ret_field: &str,
    ) -> Result<Self, Error> {
        match kind {
            ActionKind::Errno | ActionKind::Trace => {
                let v = ret.unwrap_or(libc::EPERM as u64);
                let v = u16::try_from(v).map_err(|_| {
                    Error::invalid(ret_field, format!("{v} is out of range (0-65535)"))
                })?;
                Ok(Self { kind, ret: Some(v) })
            }
            _ => match ret {
                Some(v) => Err(Error::invalid(
                    ret_field,
                    format!(
                        "{v} is set but {field} is not SCMP_ACT_ERRNO or SCMP_ACT_TRACE, \
                         which are the only actions that return a value"
                    ),
                )),
                None => Ok(Self { kind, ret: None }),
            },
        }
    }

    /// The libseccomp form of this action.
    pub(crate) fn to_scmp(self) -> libseccomp::ScmpAction {
        use libseccomp::ScmpAction as S;
        match self.kind {
            ActionKind::KillThread => S::KillThread,
            ActionKind::KillProcess => S::KillProcess,
            ActionKind::Trap => S::Trap,
            ActionKind::Errno => S::Errno(i32::from(self.ret.unwrap_or(libc::EPERM as u16))),
            ActionKind::Trace => S::Trace(self.ret.unwrap_or(libc::EPERM as u16)),
            ActionKind::Allow => S::Allow,
            ActionKind::Log => S::Log,
            ActionKind::Notify => S::Notify,
        }
    }
}

/// One argument comparison.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

/// One `syscalls[]` entry.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<Arg>,
}

/// The whole normalised profile.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub default_action: Action,
    /// `defaultErrnoRet` as written (the ENOSYS stub looks at it).
    pub default_errno_ret: Option<u64>,
    /// (index in `architectures`, token).
    pub archs: Vec<(usize, libseccomp::ScmpArch)>,
    /// (index in `flags`, flag).
    pub flags: Vec<(usize, Flag)>,
    pub listener_path: Option<PathBuf>,
    pub listener_metadata: Option<String>,
    pub rules: Vec<Rule>,
}

fn action_kind(a: LinuxSeccompAction) -> ActionKind {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ActionKind::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ActionKind::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ActionKind::Trap,
        LinuxSeccompAction::ScmpActErrno => ActionKind::Errno,
        LinuxSeccompAction::ScmpActNotify => ActionKind::Notify,
        LinuxSeccompAction::ScmpActTrace => ActionKind::Trace,
        LinuxSeccompAction::ScmpActLog => ActionKind::Log,
        LinuxSeccompAction::ScmpActAllow => ActionKind::Allow,
    }
}

fn op_of(o: LinuxSeccompOperator) -> Op {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
        LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
        LinuxSeccompOperator::ScmpCmpLe => Op::Le,
        LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
        LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
        LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
        LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

fn arch_of(a: Arch) -> libseccomp::ScmpArch {
    use libseccomp::ScmpArch as A;
    match a {
        Arch::ScmpArchNative => A::Native,
        Arch::ScmpArchX86 => A::X86,
        Arch::ScmpArchX86_64 => A::X8664,
        Arch::ScmpArchX32 => A::X32,
        Arch::ScmpArchArm => A::Arm,
        Arch::ScmpArchAarch64 => A::Aarch64,
        Arch::ScmpArchMips => A::Mips,
        Arch::ScmpArchMips64 => A::Mips64,
        Arch::ScmpArchMips64n32 => A::Mips64N32,
        Arch::ScmpArchMipsel => A::Mipsel,
        Arch::ScmpArchMipsel64 => A::Mipsel64,
        Arch::ScmpArchMipsel64n32 => A::Mipsel64N32,
        Arch::ScmpArchPpc => A::Ppc,
        Arch::ScmpArchPpc64 => A::Ppc64,
        Arch::ScmpArchPpc64le => A::Ppc64Le,
        Arch::ScmpArchS390 => A::S390,
        Arch::ScmpArchS390x => A::S390X,
        Arch::ScmpArchRiscv64 => A::Riscv64,
    }
}

fn flag_of(f: LinuxSeccompFilterFlag) -> Flag {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => Flag::Log,
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => Flag::Tsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => Flag::SpecAllow,
    }
}

/// Checks an argument index and builds the [`Arg`].
fn make_arg(
    field: &str,
    index: u64,
    value: u64,
    value_two: Option<u64>,
    op: Op,
) -> Result<Arg, Error> {
    if index > 5 {
        return Err(Error::invalid(
            &format!("{field}.index"),
            format!("{index} is out of range: a syscall has at most 6 arguments (0-5)"),
        ));
    }
    Ok(Arg {
        index: index as u32,
        value,
        value_two: value_two.unwrap_or(0),
        op,
    })
}

impl Profile {
    /// Normalises the typed oci-spec form.
    pub(crate) fn from_oci(cfg: &LinuxSeccomp) -> Result<Self, Error> {
        let default_errno_ret = cfg.default_errno_ret().map(u64::from);
        let default_action = Action::new(
            action_kind(cfg.default_action()),
            default_errno_ret,
            &format!("{ROOT}.defaultAction"),
            &format!("{ROOT}.defaultErrnoRet"),
        )?;
        let archs = cfg
            .architectures()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| (i, arch_of(*a)))
            .collect();
        let flags = cfg
            .flags()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, f)| (i, flag_of(*f)))
            .collect();
        let mut rules = Vec::new();
        for (i, s) in cfg.syscalls().iter().flatten().enumerate() {
            let field = format!("{ROOT}.syscalls[{i}]");
            let action = Action::new(
                action_kind(s.action()),
                s.errno_ret().map(u64::from),
                &format!("{field}.action"),
                &format!("{field}.errnoRet"),
            )?;
            let mut args = Vec::new();
            for (j, a) in s.args().iter().flatten().enumerate() {
                args.push(make_arg(
                    &format!("{field}.args[{j}]"),
                    a.index() as u64,
                    a.value(),
                    a.value_two(),
                    op_of(a.op()),
                )?);
            }
            rules.push(Rule {
                names: s.names().clone(),
                action,
                args,
            });
        }
        let p = Self {
            default_action,
            default_errno_ret,
            archs,
            flags,
            listener_path: cfg.listener_path().clone(),
            listener_metadata: cfg.listener_metadata().clone(),
            rules,
        };
        p.check()?;
        Ok(p)
    }

    /// Normalises the raw JSON form (the value of `linux.seccomp`).
    pub(crate) fn from_json(v: &Value) -> Result<Self, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::invalid(ROOT, "must be an object".into()))?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "defaultAction"
                    | "defaultErrnoRet"
                    | "architectures"
                    | "flags"
                    | "listenerPath"
                    | "listenerMetadata"
                    | "syscalls"
            ) {
                log::debug!("{ROOT}.{key}: unknown field ignored");
            }
        }
        let default_field = format!("{ROOT}.defaultAction");
        let default_kind = match obj.get("defaultAction") {
            None | Some(Value::Null) => {
                return Err(Error::invalid(&default_field, "is required".into()))
            }
            Some(a) => parse_named(a, &default_field, ACTIONS, "a seccomp action")?,
        };
        let default_errno_ret = opt_uint(
            obj.get("defaultErrnoRet"),
            &format!("{ROOT}.defaultErrnoRet"),
        )?;
        let default_action = Action::new(
            default_kind,
            default_errno_ret,
            &default_field,
            &format!("{ROOT}.defaultErrnoRet"),
        )?;

        let mut archs = Vec::new();
        for (i, a) in opt_array(obj.get("architectures"), &format!("{ROOT}.architectures"))?
            .iter()
            .enumerate()
        {
            let field = format!("{ROOT}.architectures[{i}]");
            archs.push((i, parse_named(a, &field, ARCHS, "a seccomp architecture")?));
        }
        let mut flags = Vec::new();
        for (i, f) in opt_array(obj.get("flags"), &format!("{ROOT}.flags"))?
            .iter()
            .enumerate()
        {
            let field = format!("{ROOT}.flags[{i}]");
            flags.push((i, parse_named(f, &field, FLAGS, "a seccomp filter flag")?));
        }
        let listener_path =
            opt_str(obj.get("listenerPath"), &format!("{ROOT}.listenerPath"))?.map(PathBuf::from);
        let listener_metadata = opt_str(
            obj.get("listenerMetadata"),
            &format!("{ROOT}.listenerMetadata"),
        )?;

        let mut rules = Vec::new();
        for (i, s) in opt_array(obj.get("syscalls"), &format!("{ROOT}.syscalls"))?
            .iter()
            .enumerate()
        {
            let field = format!("{ROOT}.syscalls[{i}]");
            let s = s
                .as_object()
                .ok_or_else(|| Error::invalid(&field, "must be an object".into()))?;
            let names_field = format!("{field}.names");
            let mut names = Vec::new();
            match s.get("names") {
                None | Some(Value::Null) => {
                    return Err(Error::invalid(&names_field, "is required".into()))
                }
                Some(Value::Array(a)) => {
                    for (k, n) in a.iter().enumerate() {
                        let n = n.as_str().ok_or_else(|| {
                            Error::invalid(
                                &format!("{names_field}[{k}]"),
                                "must be a string".into(),
                            )
                        })?;
                        names.push(n.to_string());
                    }
                }
                Some(_) => {
                    return Err(Error::invalid(
                        &names_field,
                        "must be an array of strings".into(),
                    ))
                }
            }
            let action_field = format!("{field}.action");
            let kind = match s.get("action") {
                None | Some(Value::Null) => {
                    return Err(Error::invalid(&action_field, "is required".into()))
                }
                Some(a) => parse_named(a, &action_field, ACTIONS, "a seccomp action")?,
            };
            let errno_field = format!("{field}.errnoRet");
            let action = Action::new(
                kind,
                opt_uint(s.get("errnoRet"), &errno_field)?,
                &action_field,
                &errno_field,
            )?;
            let mut args = Vec::new();
            for (j, a) in opt_array(s.get("args"), &format!("{field}.args"))?
                .iter()
                .enumerate()
            {
                let af = format!("{field}.args[{j}]");
                let a = a
                    .as_object()
                    .ok_or_else(|| Error::invalid(&af, "must be an object".into()))?;
                let index = opt_uint(a.get("index"), &format!("{af}.index"))?
                    .ok_or_else(|| Error::invalid(&format!("{af}.index"), "is required".into()))?;
                let value = opt_uint(a.get("value"), &format!("{af}.value"))?
                    .ok_or_else(|| Error::invalid(&format!("{af}.value"), "is required".into()))?;
                let value_two = opt_uint(a.get("valueTwo"), &format!("{af}.valueTwo"))?;
                let op_field = format!("{af}.op");
                let op = match a.get("op") {
                    None | Some(Value::Null) => {
                        return Err(Error::invalid(&op_field, "is required".into()))
                    }
                    Some(o) => parse_named(o, &op_field, OPERATORS, "a seccomp operator")?,
                };
                args.push(make_arg(&af, index, value, value_two, op)?);
            }
            rules.push(Rule {
                names,
                action,
                args,
            });
        }
        let p = Self {
            default_action,
            default_errno_ret,
            archs,
            flags,
            listener_path,
            listener_metadata,
            rules,
        };
        p.check()?;
        Ok(p)
    }

    /// Format-independent checks (spec MUSTs and runc's refusals).
    fn check(&self) -> Result<(), Error> {
        if self.default_action.kind == ActionKind::Notify {
            // As runc: the init must still be able to hand the notify fd to its parent
            // after the filter is loaded; a NOTIFY default would trap that hand-off.
            return Err(Error::invalid(
                &format!("{ROOT}.defaultAction"),
                "\"SCMP_ACT_NOTIFY\" cannot be the default action".into(),
            ));
        }
        let mut notify_at = None;
        for (i, r) in self.rules.iter().enumerate() {
            let field = format!("{ROOT}.syscalls[{i}]");
            if r.names.is_empty() {
                return Err(Error::invalid(
                    &format!("{field}.names"),
                    "must contain at least one entry".into(),
                ));
            }
            for (k, n) in r.names.iter().enumerate() {
                if n.is_empty() {
                    return Err(Error::invalid(
                        &format!("{field}.names[{k}]"),
                        "is empty".into(),
                    ));
                }
                if r.action.kind == ActionKind::Notify
                    && crate::NOTIFY_FORBIDDEN_SYSCALLS.contains(&n.as_str())
                {
                    // As runc (which forbids write): the init hands the notify fd to
                    // its parent after loading the filter; trapping that call to an
                    // agent that does not have the fd yet would hang the container.
                    return Err(Error::invalid(
                        &format!("{field}.names[{k}]"),
                        format!(
                            "{n:?} cannot use SCMP_ACT_NOTIFY: the runtime needs it to hand the \
                             notify fd to the seccomp agent"
                        ),
                    ));
                }
            }
            if r.action.kind == ActionKind::Notify && notify_at.is_none() {
                notify_at = Some(i);
            }
        }
        if let Some(i) = notify_at {
            if self
                .listener_path
                .as_ref()
                .is_none_or(|p| p.as_os_str().is_empty())
            {
                return Err(Error::invalid(
                    &format!("{ROOT}.listenerPath"),
                    format!("is required because {ROOT}.syscalls[{i}] uses SCMP_ACT_NOTIFY"),
                ));
            }
        }
        if self
            .listener_metadata
            .as_ref()
            .is_some_and(|m| !m.is_empty())
            && self
                .listener_path
                .as_ref()
                .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(Error::invalid(
                &format!("{ROOT}.listenerMetadata"),
                "must not be set when listenerPath is not set".into(),
            ));
        }
        Ok(())
    }

    /// Whether any rule uses `SCMP_ACT_NOTIFY`.
    pub(crate) fn uses_notify(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.action.kind == ActionKind::Notify)
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Looks a string up in one of the name tables above.
fn parse_named<T: Copy>(
    v: &Value,
    field: &str,
    table: &[(&str, T)],
    what: &str,
) -> Result<T, Error> {
    let s = v
        .as_str()
        .ok_or_else(|| Error::invalid(field, format!("{} must be a string", describe(v))))?;
    table
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| Error::invalid(field, format!("{s:?} is not {what}")))
}

fn opt_uint(v: Option<&Value>, field: &str) -> Result<Option<u64>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
            Error::invalid(
                field,
                format!("{} must be an unsigned integer", describe(x)),
            )
        }),
    }
}

fn opt_str(v: Option<&Value>, field: &str) -> Result<Option<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(x) => Err(Error::invalid(
            field,
            format!("{} must be a string", describe(x)),
        )),
    }
}

fn opt_array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], Error> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(x) => Err(Error::invalid(
            field,
            format!("{} must be an array", describe(x)),
        )),
    }
}
