//! The `linux.seccomp` object of `runtime-spec/features-linux.md`.

use serde_json::{json, Value};

use crate::bpf;
use crate::compiler::{flag_bit, libseccomp_knows};
use crate::profile::{ACTIONS, ARCHS, FLAGS, OPERATORS};

/// See [`crate::features`].
pub(crate) fn features() -> Value {
    let actions: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
    let operators: Vec<&str> = OPERATORS.iter().map(|(n, _)| *n).collect();
    let archs: Vec<&str> = ARCHS
        .iter()
        .filter(|(n, a)| *n != "SCMP_ARCH_NATIVE" && libseccomp_knows(*a))
        .map(|(n, _)| *n)
        .collect();
    let known: Vec<&str> = FLAGS.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = FLAGS
        .iter()
        .filter(|(_, f)| bpf::kernel_supports_flag(flag_bit(*f)))
        .map(|(n, _)| *n)
        .collect();
    json!({
        "enabled": true,
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}
