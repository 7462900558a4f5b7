//! Bad profiles are refused at compile time with the offending field named.

use serde_json::json;
use skiff_seccomp::{compile, compile_json};

fn json_err(v: serde_json::Value) -> String {
    compile_json(&v)
        .expect_err("profile must be refused")
        .to_string()
}

fn typed_err(v: serde_json::Value) -> String {
    let cfg: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v).expect("typed parse");
    compile(&cfg)
        .expect_err("profile must be refused")
        .to_string()
}

#[test]
fn unknown_action_names_the_field() {
    let e = json_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mkdir"], "action": "SCMP_ACT_FOO"}
        ]
    }));
    assert_eq!(
        e,
        r#"linux.seccomp.syscalls[1].action "SCMP_ACT_FOO" is not a seccomp action"#
    );
    let e = json_err(json!({"defaultAction": "SCMP_ACT_BAR"}));
    assert_eq!(
        e,
        r#"linux.seccomp.defaultAction "SCMP_ACT_BAR" is not a seccomp action"#
    );
    // oci-spec alone refuses it too, but without naming the field: why compile_json exists.
    let typed: Result<oci_spec::runtime::LinuxSeccomp, _> =
        serde_json::from_value(json!({"defaultAction": "SCMP_ACT_BAR"}));
    assert!(typed.is_err());
}

#[test]
fn unknown_arch_flag_and_operator_name_the_field() {
    let e = json_err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}),
    );
    assert_eq!(
        e,
        r#"linux.seccomp.architectures[1] "SCMP_ARCH_VAX" is not a seccomp architecture"#
    );

    let e =
        json_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}));
    assert_eq!(
        e,
        r#"linux.seccomp.flags[0] "SECCOMP_FILTER_FLAG_NOPE" is not a seccomp filter flag"#
    );

    let e = json_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_APPROX"}]}]
    }));
    assert_eq!(
        e,
        r#"linux.seccomp.syscalls[0].args[1].op "SCMP_CMP_APPROX" is not a seccomp operator"#
    );
}

#[test]
fn wrong_types_and_missing_fields() {
    assert_eq!(
        json_err(json!({})),
        "linux.seccomp.defaultAction is required"
    );
    assert_eq!(
        json_err(json!({"defaultAction": 3})),
        "linux.seccomp.defaultAction 3 must be a string"
    );
    assert_eq!(
        json_err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]})
        ),
        "linux.seccomp.syscalls[0].names is required"
    );
    assert_eq!(
        json_err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]})
        ),
        "linux.seccomp.syscalls[0].names must contain at least one entry"
    );
    assert_eq!(
        json_err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}]})
        ),
        "linux.seccomp.syscalls[0].errnoRet -1 must be an unsigned integer"
    );
    assert_eq!(
        json_err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}]})
        ),
        "linux.seccomp.syscalls[0].args[0].value is required"
    );
}

#[test]
fn semantic_errors_through_the_typed_api() {
    let e = typed_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]
    }));
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].errnoRet 1 is set but"),
        "{e}"
    );

    let e = typed_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 5}));
    assert!(
        e.starts_with("linux.seccomp.defaultErrnoRet 5 is set but"),
        "{e}"
    );

    let e = typed_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    }));
    assert_eq!(
        e,
        "linux.seccomp.syscalls[0].errnoRet 70000 is out of range (0-65535)"
    );

    let e = typed_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].args[0].index 6 is out of range"),
        "{e}"
    );

    let e =
        typed_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}));
    assert_eq!(
        e,
        r#"linux.seccomp.defaultAction "SCMP_ACT_NOTIFY" cannot be the default action"#
    );

    let e = typed_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_LOG"}, {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert_eq!(e, "linux.seccomp.listenerPath is required because linux.seccomp.syscalls[1] uses SCMP_ACT_NOTIFY");

    let e = typed_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    assert_eq!(
        e,
        "linux.seccomp.listenerMetadata must not be set when listenerPath is not set"
    );

    let e = typed_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        e.starts_with(r#"linux.seccomp.syscalls[0].names[1] "write" cannot use SCMP_ACT_NOTIFY"#),
        "{e}"
    );

    let e = typed_err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [""], "action": "SCMP_ACT_LOG"}]}),
    );
    assert_eq!(e, "linux.seccomp.syscalls[0].names[0] is empty");
}

#[test]
fn arch_unknown_to_the_linked_libseccomp() {
    // LoongArch arrived in libseccomp 2.6; oci-spec 0.8 cannot even express it.
    let r = compile_json(
        &json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]}),
    );
    let v = skiff_seccomp::libseccomp_version();
    match r {
        Ok(_) => eprintln!("SKIP: libseccomp {v} knows loongarch64, nothing to refuse"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.starts_with(r#"linux.seccomp.architectures[0] "SCMP_ARCH_LOONGARCH64" is not supported by the linked libseccomp"#),
                "{e}"
            );
        }
    }
}

#[test]
fn archs_of_any_endianness_can_be_listed() {
    // Each arch gets its own libseccomp program, so libseccomp's one-endianness-per-
    // filter rule does not apply (runc would refuse this list).
    let f = compile(&serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_S390X", "SCMP_ARCH_PPC64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    })).unwrap());
    assert!(f.is_ok(), "{:?}", f.err());
}

#[test]
fn wait_killable_recv_is_accepted_from_json() {
    // oci-spec 0.8 has no variant for it; compile_json does.
    let f = compile_json(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let supported = skiff_seccomp::features()["supportedFlags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
    if supported {
        let f = f.expect("compiles");
        assert_eq!(
            f.flags() & (1 << 5),
            1 << 5,
            "WAIT_KILLABLE_RECV passed to seccomp(2)"
        );
        assert!(f.uses_notify());
    } else {
        let e = f.expect_err("unsupported by the kernel").to_string();
        assert!(e.contains("flags[0]"), "{e}");
    }
    // Without NOTIFY the flag has no meaning (the kernel would refuse it): dropped.
    let f = compile_json(&json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}))
        .expect("compiles");
    assert_eq!(f.flags(), 0);
}

#[test]
fn features_lists_everything_the_spec_names() {
    let f = skiff_seccomp::features();
    assert_eq!(f["enabled"], true);
    let names = |k: &str| -> Vec<String> { serde_json::from_value(f[k].clone()).unwrap() };
    for a in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ] {
        assert!(names("actions").contains(&a.to_string()), "{a}");
    }
    assert_eq!(names("operators").len(), 7);
    assert_eq!(names("knownFlags").len(), 4);
    for a in [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_S390X",
    ] {
        assert!(names("archs").contains(&a.to_string()), "{a}");
    }
    // Kernel 4.14+ has LOG, 4.17+ SPEC_ALLOW; TSYNC since 3.17.
    for fl in ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"] {
        assert!(names("supportedFlags").contains(&fl.to_string()), "{fl}");
    }
}
