#!/usr/bin/env bash
# Builds skiff and runs a container from the embedded default image
# (the build host's static busybox): no registry, no internet. Then, when
# QEMU and a guest kernel are there, runs the same image with
# --isolation vm (its own kernel in a QEMU microvm).
# Run as root on Debian 12 with a Rust toolchain.
#   SKIFF_DEMO_VM=0 skips the VM part.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (containers need namespaces and mounts)" >&2
  exit 1
fi
# busybox-static is what gets embedded; install it (and the rest) when missing.
[ -x /bin/busybox ] || bash scripts/deps.sh
# target/dist/: the runtime linked statically, skiff-tools, the VM agent
# (scripts/build.sh; the first build takes several minutes)
echo "+ scripts/build.sh   (release build into target/dist/)"
SKIFF=$(bash scripts/build.sh)
STORE=${SKIFF_STORE:-/var/lib/skiff}
echo "+ skiff image pull skiff/default   (built from the embedded busybox, no network)"
"$SKIFF" --store "$STORE" image pull -q skiff/default
"$SKIFF" --store "$STORE" image ls
echo "+ skiff run --image skiff/default --rm -- sh -c 'uname -a; id; cat /etc/os-release'"
"$SKIFF" --store "$STORE" run --image skiff/default --rm "demo-$$" -- \
  sh -c 'echo "hello from inside a skiff container"; uname -a; id; hostname; cat /etc/os-release || true'

[ "${SKIFF_DEMO_VM:-1}" = 0 ] && exit 0
echo "+ skiff check   (can this host run VM containers?)"
report=$("$SKIFF" check --format json) || true
if ! grep -q '"vm_ready": true' <<< "$report"; then
  "$SKIFF" check || true
  echo "demo: skipping --isolation vm: see what skiff check reports missing above" >&2
  exit 0
fi
accel=$(sed -n 's/^ *"accel": "\([a-z]*\)".*/\1/p' <<< "$report")
echo "+ skiff --isolation vm run --image skiff/default --rm -- sh -c 'uname -r; ...'"
if [ "$accel" != kvm ]; then
  echo "  (no usable KVM: QEMU emulates the CPU (TCG); the first start prepares the guest"
  echo "   kernel, the initramfs and a VM template, which takes a minute or more)"
fi
# Progress while the VM starts: the container's first line ends it.
start=$(date +%s)
ticker() {
  while sleep 10; do echo "  ... starting the VM ($(( $(date +%s) - start )) s)" >&2; done
}
ticker &
tick=$!
trap 'kill $tick 2>/dev/null || true' EXIT
"$SKIFF" --store "$STORE" --isolation vm run --image skiff/default --rm "demo-vm-$$" -- \
  sh -c 'echo "hello from inside a skiff VM"; echo "guest kernel: $(uname -r)"; echo "host kernel: '"$(uname -r)"'"; id; hostname' |
  while IFS= read -r line; do kill $tick 2>/dev/null || true; echo "$line"; done
kill $tick 2>/dev/null || true
echo "demo: the VM container ran in $(( $(date +%s) - start )) s (accelerator: ${accel:-?})"
