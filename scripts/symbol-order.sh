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
# bench/runtime.sh.  valgrind lacks openat2: the resolver's own walk
# (linux/fs.rs) is what runs under it.
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
# perf rounds (below) run the config as `skiff spec` writes it
mkdir -p "$work/pbundle"
cp "$work/bundle/config.json" "$work/pbundle/config.json"
ln -s ../bundle/rootfs "$work/pbundle/rootfs"
# valgrind keeps fds of its own and refuses RLIMIT_NOFILE changes: without
# rlimits the traced init runs to its exec.
python3 - "$work/bundle/config.json" <<'EOF2'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"].pop("rlimits", None)
json.dump(c, open(sys.argv[1], "w"))
EOF2
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

# Second source: the text page faults of real runs (perf), which also see
# what valgrind's emulated CPU hides (e.g. the AVX-512 variants glibc picks
# here) and ThinLTO's renamed locals of the new build. Each fault names the
# first function touched in a 64 KiB window, so: relink with the additions,
# measure again, a few rounds. Needs perf and scripts/build.sh's output.
if [ -z "${SKIFF_BIN:-}" ] && command -v perf >/dev/null; then
  for round in 1 2 3 4; do
    bin=$(bash "$repo/scripts/build.sh" --runtime-only)
    rm -f "$work"/faults.*.txt
    pf() { perf record -q -d -e page-faults -c 1 -o "$work/pf.data" -- \
             "$bin" --root "$work/state" "$@" >/dev/null 2>&1 || true
           perf script -i "$work/pf.data" -F comm,addr 2>/dev/null >>"$work/faults.$round.txt"; }
    pf run -b "$work/pbundle" p1
    pf create -b "$work/pbundle" p2
    pf state p2
    pf start p2
    sleep 0.1
    pf delete -f p2
    added=$(python3 "$repo/scripts/symbol-order.py" --faults "$bin" \
              "$repo/crates/skiff/symbol-order.txt" "$work/faults.$round.txt")
    echo "round $round: $added"
    case "$added" in "0 "*) break ;; esac
  done
  bash "$repo/scripts/build.sh" --runtime-only >/dev/null
fi
