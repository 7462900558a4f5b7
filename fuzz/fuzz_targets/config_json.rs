//! Fuzz target `config_json`: arbitrary bytes as `config.json`.
//!
//! Parses them as an OCI runtime `Spec` (oci-spec, via serde_json) and compiles
//! `linux.seccomp` with `skiff_seccomp::compile`; also compiles the raw JSON value
//! with `skiff_seccomp::compile_json`. Properties checked besides "no panic":
//! a compiled filter is non-empty and within the kernel's 4096-instruction limit,
//! and the typed and raw paths agree (a profile the typed path accepts is accepted
//! by the raw path with the same program size).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let typed = serde_json::from_slice::<oci_spec::runtime::Spec>(data).ok();
    let typed_result = typed
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.seccomp().as_ref())
        .map(skiff_seccomp::compile);
    if let Some(Ok(f)) = &typed_result {
        assert!(f.instructions() > 0 && f.instructions() <= 4096, "{f:?}");
    }

    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    // The whole document's seccomp object, or the document itself as one.
    let seccomp = value.pointer("/linux/seccomp").unwrap_or(&value);
    let raw_result = skiff_seccomp::compile_json(seccomp);
    if let Ok(f) = &raw_result {
        assert!(f.instructions() > 0 && f.instructions() <= 4096, "{f:?}");
    }
    if let (Some(Ok(t)), true) = (&typed_result, value.pointer("/linux/seccomp").is_some()) {
        match &raw_result {
            Ok(r) => assert_eq!(t.instructions(), r.instructions(), "typed and raw programs differ"),
            Err(e) => panic!("typed path accepted what the raw path refuses: {e}"),
        }
    }
});
