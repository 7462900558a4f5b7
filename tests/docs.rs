//! The reference pages are complete:
//!
//! - docs/configuration.md names every long flag of every subcommand (read
//!   from `skiff-tools ... --help`, the whole command line), every
//!   `SKIFF_*` environment variable and every `run.skiff.*` annotation the
//!   sources read;
//! - docs/troubleshooting.md has every message of the error enums
//!   (`#[error("...")]` in crates/*/src), format placeholders normalised to
//!   `{}`.
//!
//! A failure lists exactly what is missing, ready to paste.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff-tools"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run skiff-tools --help");
    assert!(out.status.success(), "{args:?} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommand names listed under `Commands:` of a help text.
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n != "help")
        .collect()
}

/// The long flags (`--name`) in the option lines of a help text.
fn long_flags(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in help.lines().map(str::trim_start) {
        // "-b, --bundle <BUNDLE>" or "--root <ROOT>"
        let flag_part = line.split("  ").next().unwrap_or("");
        for word in flag_part.split([' ', ',', '[', '=', '<']) {
            if let Some(name) = word.strip_prefix("--") {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    out.push(format!("--{name}"));
                }
            }
        }
    }
    out
}

/// Every (command path, long flag) of the whole command line.
fn all_flags() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        let name = if path.is_empty() {
            "skiff".to_owned()
        } else {
            format!("skiff {}", path.join(" "))
        };
        for f in long_flags(&text) {
            if f != "--help" && f != "--version" {
                out.insert((name.clone(), f));
            }
        }
        for c in commands(&text) {
            let mut p = path.clone();
            p.push(c);
            todo.push(p);
        }
    }
    out
}

/// Rust sources of crates/*/src.
fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = fs::read_dir(repo().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

/// Words of `text` that start with `prefix` and continue with `allowed`.
fn tokens(text: &str, prefix: &str, allowed: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let n = tail.find(|c: char| !allowed(c)).unwrap_or(tail.len());
        let tok = tail[..n].trim_end_matches(['.', '-', '_']);
        if !tok.is_empty() {
            out.insert(format!("{prefix}{tok}"));
        }
        rest = tail;
    }
    out
}

/// The string literal starting at `s` (just after its opening quote),
/// unescaped enough for comparison; `None` if unterminated.
fn literal(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push(' '),
                '\n' => {
                    // line continuation: skip the next line's indentation
                    let rest: String = chars.clone().collect();
                    let skip = rest.len() - rest.trim_start().len();
                    for _ in 0..rest[..skip].chars().count() {
                        chars.next();
                    }
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `{name}`, `{0:?}`, `{}` -> `{}`; `{{`/`}}` stay literal braces.
fn normalise(msg: &str) -> String {
    let mut out = String::new();
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push_str("{}");
            }
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every `#[error("...")]` message (normalised) with where it is.
fn error_messages() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, text) in sources() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("#[error(") {
            rest = &rest[i + "#[error(".len()..];
            let trimmed = rest.trim_start();
            let Some(body) = trimmed.strip_prefix('"') else {
                continue; // transparent
            };
            let Some(msg) = literal(body) else { continue };
            let msg = normalise(&msg);
            // nothing but placeholders: the inner error's message is printed
            let letters = msg
                .replace("{}", "")
                .chars()
                .filter(|c| c.is_alphabetic())
                .count();
            if letters >= 3 {
                let rel = path
                    .strip_prefix(repo())
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                out.push((msg, rel));
            }
        }
    }
    out
}

/// The text under the heading that names `` `cmd` `` (up to the next heading).
fn section<'a>(page: &'a str, cmd: &str) -> Option<&'a str> {
    let title = format!("`{cmd}`");
    let mut start = None;
    let mut offset = 0;
    for line in page.split_inclusive('\n') {
        if line.starts_with('#') {
            if let Some(s) = start {
                return Some(&page[s..offset]);
            }
            if line.contains(&title) {
                start = Some(offset + line.len());
            }
        }
        offset += line.len();
    }
    start.map(|s| &page[s..])
}

#[test]
fn configuration_names_every_flag_env_var_and_annotation() {
    let page =
        fs::read_to_string(repo().join("docs/configuration.md")).expect("docs/configuration.md");
    let mut missing = Vec::new();
    for (cmd, flag) in all_flags() {
        let section = section(&page, &cmd);
        let known = tokens(section.unwrap_or(""), "--", |c| {
            c.is_ascii_alphanumeric() || c == '-'
        });
        if !known.contains(&flag) {
            let why = if section.is_none() {
                format!(" (no section titled `{cmd}`)")
            } else {
                String::new()
            };
            missing.push(format!("{cmd}: {flag}{why}"));
        }
    }
    let mut env = BTreeSet::new();
    let mut annotations = BTreeSet::new();
    for (_, text) in sources() {
        env.extend(tokens(&text, "SKIFF_", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        }));
        annotations.extend(tokens(&text, "run.skiff.", |c| {
            c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'
        }));
    }
    let page_env = tokens(&page, "SKIFF_", |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    });
    let page_ann = tokens(&page, "run.skiff.", |c| {
        c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'
    });
    missing.extend(
        env.difference(&page_env)
            .map(|e| format!("environment variable: {e}")),
    );
    missing.extend(
        annotations
            .difference(&page_ann)
            .map(|a| format!("annotation: {a}")),
    );
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {} entries:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn troubleshooting_has_every_error_message() {
    let page = fs::read_to_string(repo().join("docs/troubleshooting.md"))
        .expect("docs/troubleshooting.md");
    let page = normalise(&page);
    let mut seen = BTreeSet::new();
    let missing: Vec<String> = error_messages()
        .into_iter()
        .filter(|(msg, _)| !page.contains(&format!("\"{msg}\"")))
        .filter(|(msg, _)| seen.insert(msg.clone()))
        .map(|(msg, file)| format!("- \"{msg}\": ({file}) CAUSE; FIX."))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md lacks {} error messages (placeholders as {{}}):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_parsers_of_this_test_work() {
    assert_eq!(normalise("bad {field:?}: {0} {{x}}"), "bad {}: {} {x}");
    assert_eq!(
        long_flags("  -b, --bundle <BUNDLE>  Path\n      --rootless[=<R>]  x\n      --no-pivot  y"),
        ["--bundle", "--rootless", "--no-pivot"]
    );
    assert_eq!(
        literal("a \\\"b\\\" c\" rest").as_deref(),
        Some("a \"b\" c")
    );
    assert_eq!(literal("one \\\n        two\"").as_deref(), Some("one two"));
}
