#!/usr/bin/env bash
# Regenerates crates/skiff/symbol-order.txt: the functions of the release
# `skiff` binary (the static one of scripts/build.sh: its symbol names carry
# that build's crate hashes) that create/start/state/delete/run execute, in
# first-run order, from valgrind (lackey) superblock traces. crates/skiff/build.rs
# hands the list to the linker so that this code is laid out together
# (less of the binary resident on every container start).
#
# Usage (root, needs valgrind): scripts/symbol-order.sh
# Then rebuild (scripts/build.sh) and compare peak RSS with
# bench/runtime.sh.  valgrind lacks openat2, so the init's mount setup is
# traced only up to its first mount.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
if [ -n "${SKIFF_BIN:-}" ]; then
  bin=$SKIFF_BIN
else
  bin=$(bash "$repo/scripts/build.sh" --runtime-only)
fi
work=$(mktemp -d /tmp/skiff-symorder-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs" "$work/state"
cp "$(command -v busybox)" "$work/bundle/rootfs/busybox"
mkdir -p "$work/bundle/rootfs/bin"
ln -s ../busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && "$bin" spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' "$work/bundle/config.json"
vg() { valgrind --tool=lackey --trace-superblocks=yes --trace-children=yes \
         --log-file="$work/trace.%p.log" "$bin" --root "$work/state" "$@" || true; }
vg run -b "$work/bundle" t1
"$bin" --root "$work/state" delete -f t1 2>/dev/null || true
"$bin" --root "$work/state" create -b "$work/bundle" t2
vg state t2 >/dev/null
vg start t2
sleep 0.2
vg delete -f t2
vg create -b "$work/bundle" t3
"$bin" --root "$work/state" delete -f t3 || true
python3 "$repo/scripts/symbol-order.py" "$bin" "$repo/crates/skiff/symbol-order.txt" "$work"/trace.*.log
