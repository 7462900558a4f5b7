//! Hands `image`, `registry` and `run --image` over to `skiff-tools`.
//!
//! The runtime-only `skiff` executable decides from the raw arguments,
//! before any parsing, whether the command belongs to `skiff-tools`, and if
//! so `exec`s it with the same arguments (the way `git` runs its helpers).
//! The runtime path never pays for the image and registry code.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

/// Global flags that take a value in the next argument (`--root X`).
const GLOBAL_WITH_VALUE: &[&str] = &[
    "--root",
    "--log",
    "--log-format",
    "--criu",
    "--isolation",
    "--store",
];

/// Every global flag (see `skiff::Global`).
const GLOBAL_FLAGS: &[&str] = &[
    "--root",
    "--log",
    "--log-format",
    "--debug",
    "--systemd-cgroup",
    "--rootless",
    "--criu",
    "--isolation",
    "--store",
];

/// True when a global flag (`--root X`, `--debug`, `--store=Y`...) comes
/// after the subcommand in `argv` (with argv[0]), before any `--`. runc
/// accepts global flags before the subcommand only; skiff accepts both.
pub fn globals_after_command(argv: &[OsString]) -> bool {
    let Some(i) = subcommand_index(argv) else {
        return false;
    };
    argv[i + 1..]
        .iter()
        .map(|a| a.as_encoded_bytes())
        .take_while(|s| *s != b"--")
        .any(|s| {
            GLOBAL_FLAGS.iter().any(|g| {
                let g = g.as_bytes();
                s == g || (s.starts_with(g) && s.get(g.len()) == Some(&b'='))
            })
        })
}

/// Index in `argv` (with argv[0]) of the subcommand: the first argument
/// that is neither a leading global flag nor a global flag's value.
pub fn subcommand_index(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let s = argv[i].as_encoded_bytes();
        if s == b"--" {
            return None;
        }
        if !s.starts_with(b"-") {
            return Some(i);
        }
        if GLOBAL_WITH_VALUE.iter().any(|g| s == g.as_bytes()) {
            i += 1;
        }
        i += 1;
    }
    None
}

/// True when `argv` (with argv[0]) names a command of `skiff-tools`:
/// `image ...`, `registry ...`, `check`, `completion`, `man`, or
/// `run ... --image REF ...`.
pub fn wants_tools(argv: &[OsString]) -> bool {
    let Some(i) = subcommand_index(argv) else {
        return false;
    };
    match argv[i].as_encoded_bytes() {
        b"image" | b"registry" | b"network" | b"check" | b"completion" | b"man" => true,
        b"run" => argv[i + 1..]
            .iter()
            .map(|a| a.as_encoded_bytes())
            .take_while(|s| *s != b"--")
            .any(|s| s == b"--image" || s.starts_with(b"--image=")),
        _ => false,
    }
}

/// Rewrites runc's `--rootless VALUE` (a separate argument, as runc's
/// flag parser takes it) into `--rootless=VALUE`; a bare `--rootless`
/// stays a flag meaning true.
pub fn normalize_args(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if a == "--rootless" {
            if let Some(v) = it.next_if(|v| v == "true" || v == "false" || v == "auto") {
                let mut merged = OsString::from("--rootless=");
                merged.push(v);
                out.push(merged);
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Where `skiff-tools` is: `$SKIFF_TOOLS`, next to this executable, or on
/// `$PATH`.
pub fn tools_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_TOOLS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("skiff-tools")))
        .filter(|p| p.is_file())
    {
        return Some(sibling);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("skiff-tools"))
        .find(|p| p.is_file())
}

/// Replaces this process with `skiff-tools` and this process's arguments;
/// returns only to exit with an error.
pub fn exec_tools() -> ! {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let Some(tools) = tools_path() else {
        eprintln!(
            "skiff: the image and registry commands live in `skiff-tools`, which was not \
             found next to this executable or on $PATH (set $SKIFF_TOOLS to its path)"
        );
        std::process::exit(1);
    };
    let err = std::process::Command::new(&tools)
        .arg0(
            argv.first()
                .map(|a| a.as_os_str())
                .unwrap_or(OsStr::new("skiff")),
        )
        .args(argv.iter().skip(1))
        .exec();
    eprintln!("skiff: cannot run {}: {err}", tools.display());
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::{globals_after_command, normalize_args, wants_tools};
    use std::ffi::OsString;

    fn argv(s: &str) -> Vec<OsString> {
        std::iter::once("skiff")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn finds_global_flags_after_the_command() {
        assert!(!globals_after_command(&argv(
            "--root /r --debug create -b b id"
        )));
        assert!(!globals_after_command(&argv("--log /l state id")));
        assert!(globals_after_command(&argv("state id --root /r")));
        assert!(globals_after_command(&argv(
            "--debug run -d --image x --store=/s"
        )));
        assert!(globals_after_command(&argv("delete --debug id")));
        // not a flag of ours, or the container's own command line
        assert!(!globals_after_command(&argv("exec id ls --rootfs")));
        assert!(!globals_after_command(&argv(
            "run --image x n -- ls --root /"
        )));
        assert!(!globals_after_command(&argv("--root /r")));
    }

    #[test]
    fn routes_image_and_registry_commands() {
        assert!(wants_tools(&argv("image pull busybox")));
        assert!(wants_tools(&argv("--root /x --store /s image ls")));
        assert!(wants_tools(&argv("--debug registry serve")));
        assert!(wants_tools(&argv("network ls")));
        assert!(wants_tools(&argv("run --image busybox --rm n -- sh")));
        assert!(wants_tools(&argv("run -d --image=busybox")));
        assert!(wants_tools(&argv("completion bash")));
        assert!(wants_tools(&argv("check --format json")));
    }

    #[test]
    fn rootless_value_as_next_argument() {
        let n = |s: &str| normalize_args(argv(s))[1..].join(OsString::from(" ").as_os_str());
        assert_eq!(n("--rootless false list"), "--rootless=false list");
        assert_eq!(n("--rootless spec"), "--rootless spec");
        assert_eq!(n("--rootless=auto list"), "--rootless=auto list");
        assert_eq!(n("exec x -- --rootless true"), "exec x -- --rootless true");
    }

    #[test]
    fn keeps_runtime_commands() {
        assert!(!wants_tools(&argv("run -b /bundle id")));
        assert!(!wants_tools(&argv("--root image create id")));
        assert!(!wants_tools(&argv("run id -- --image")));
        assert!(!wants_tools(&argv("create -b image image")));
        assert!(!wants_tools(&argv("state registry")));
        assert!(!wants_tools(&argv("--log image --log-format json list")));
    }
}
