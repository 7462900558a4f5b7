#!/usr/bin/env bash
# Churn test: N containers (default 1000) created, started and deleted one
# after another with the runtime's CLI, then a check that nothing is left:
#   - cgroup directories named after the ids (any controller, v1 or v2),
#   - mounts (host mount table lines mentioning the bundle or the ids, and
#     the count of host mounts before/after),
#   - state directories under --root,
#   - file descriptors of this shell (count before/after),
#   - zombies whose parent is this shell (the inits are left to the caller,
#     as a shim expects; bash reaps unknown children on SIGCHLD),
#   - processes still running from the bundle.
# Prints the rate and the leftovers; exits 1 when anything is left.
#
# Usage: bench/churn.sh [-n N] [--process "ARGS"]
# Env:   RT (default target/release/skiff, built when missing); RT=runc works too.
set -euo pipefail

n=1000
proc_args='["true"]'
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    --process) proc_args=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
RT=${RT:-$repo/target/release/skiff}
[ "$(id -u)" = 0 ] || { echo "bench/churn.sh must run as root" >&2; exit 1; }
for t in python3 busybox; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
if [ "$RT" = "$repo/target/release/skiff" ] && [ ! -x "$RT" ]; then
  echo "building release skiff..."
  (cd "$repo" && cargo build --release -p skiff)
fi
case "$RT" in */*) RT=$(realpath "$RT") ;; *) RT=$(command -v "$RT") ;; esac

work=$(mktemp -d /tmp/skiff-churn.XXXXXX)
chmod 755 "$work"
root=$work/state
bundle=$work/bundle
mkdir -p "$root" "$bundle/rootfs"
tag="churn-$$"
cleanup() {
  for id in $("$RT" --root "$root" list -q 2>/dev/null); do
    "$RT" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# busybox rootfs
(
  cd "$bundle/rootfs"
  mkdir -p bin proc sys dev tmp etc
  cp "$(command -v busybox)" bin/busybox
  for a in $(bin/busybox --list); do [ -e "bin/$a" ] || ln -s busybox "bin/$a"; done
)
(cd "$bundle" && "$RT" spec)
python3 - "$bundle/config.json" "$proc_args" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = json.loads(sys.argv[2])
c["root"] = {"path": "rootfs", "readonly": False}
json.dump(c, open(p, "w"), indent=1)
EOF

count_fds() { ls /proc/$$/fd | wc -l; }
zombies() { ps -eo ppid=,stat=,pid= | awk -v p=$$ '$1==p && $2 ~ /^Z/ {print $3}'; }
mounts_now() { wc -l < /proc/self/mountinfo; }

fds0=$(count_fds)
mounts0=$(mounts_now)
echo "runtime: $RT ($("$RT" --version | head -1))"
echo "containers: $n, process: $proc_args, bundle: $bundle"

fail_create=0
t0=$(date +%s.%N)
for i in $(seq 1 "$n"); do
  id="$tag-$i"
  if ! "$RT" --root "$root" create --bundle "$bundle" "$id" </dev/null >/dev/null 2>"$work/err"; then
    fail_create=$((fail_create + 1))
    [ $fail_create -le 3 ] && { echo "create $id failed:"; cat "$work/err"; }
    "$RT" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
    continue
  fi
  "$RT" --root "$root" start "$id" </dev/null >/dev/null
  "$RT" --root "$root" delete -f "$id" </dev/null >/dev/null
done
t1=$(date +%s.%N)
sleep 0.5 # let the last exits be reaped

elapsed=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
rate=$(python3 -c "print(f'{$n / ($t1 - $t0):.1f}')")
per=$(python3 -c "print(f'{($t1 - $t0) * 1000 / $n:.1f}')")
echo "done: $n x (create + start + delete -f) in ${elapsed}s: $rate containers/s, $per ms each; create failures: $fail_create"

left=0
report() { # name, list
  local name=$1 list=$2
  if [ -n "$list" ]; then
    left=1
    echo "LEFT $name ($(printf '%s\n' "$list" | wc -l)):"
    printf '%s\n' "$list" | head -10 | sed 's/^/  /'
  else
    echo "ok   $name: none"
  fi
}
report "cgroup dirs" "$(find /sys/fs/cgroup -maxdepth 5 -type d -name "$tag-*" 2>/dev/null || true)"
report "mounts naming the bundle/ids" "$(grep -e "$work" -e "$tag-" /proc/self/mountinfo || true)"
report "state dirs" "$(ls -A "$root")"
report "zombie children of the shell" "$(zombies)"
report "processes from the bundle" "$(pgrep -f "$bundle" || true)"
fds1=$(count_fds)
mounts1=$(mounts_now)
if [ "$fds1" -gt "$fds0" ]; then left=1; echo "LEFT fds of the shell: $fds0 -> $fds1"; else echo "ok   fds of the shell: $fds0 -> $fds1"; fi
if [ "$mounts1" -gt "$mounts0" ]; then echo "note host mount count: $mounts0 -> $mounts1 (other users of the host may mount too)"; else echo "ok   host mount count: $mounts0 -> $mounts1"; fi
[ $fail_create -eq 0 ] || left=1
exit $left
