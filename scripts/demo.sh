#!/usr/bin/env bash
# Builds skiff and runs a container from the embedded default image
# (the build host's static busybox): no registry, no internet.
# Run as root on Debian 12 with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (containers need namespaces and mounts)" >&2
  exit 1
fi
# busybox-static is what gets embedded; install it (and the rest) when missing.
[ -x /bin/busybox ] || bash scripts/deps.sh
# target/dist/: the runtime linked statically + skiff-tools (scripts/build.sh)
SKIFF=$(bash scripts/build.sh)
STORE=${SKIFF_STORE:-/var/lib/skiff}
echo "+ skiff image pull skiff/default   (built from the embedded busybox, no network)"
"$SKIFF" --store "$STORE" image pull -q skiff/default
"$SKIFF" --store "$STORE" image ls
echo "+ skiff run --image skiff/default --rm -- sh -c 'uname -a; id; cat /etc/os-release'"
"$SKIFF" --store "$STORE" run --image skiff/default --rm "demo-$$" -- \
  sh -c 'echo "hello from inside a skiff container"; uname -a; id; hostname; cat /etc/os-release || true'
