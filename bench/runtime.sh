#!/usr/bin/env bash
# Runtime benchmark: skiff vs runc vs crun on the same busybox bundle, in ONE
# hyperfine run (so all three see the same machine load), then peak RSS of
# `run` with /usr/bin/time -v, then ratios skiff/crun and skiff/runc.
#
#   (a) run      `<rt> run -b B id` of /bin/true with `runc spec`'s default
#                namespaces (pid, network, ipc, uts, mount)
#   (b) lifecycle `<rt> create -b B id && <rt> start id && <rt> delete -f id`
#   (c) run again, each after 50 ms of idleness (isolated starts)
#
# Usage: bench/runtime.sh [--runs N] [--no-hugetlb-fix] [--keep-hugetlb] [--only-skiff]
#                         [--cgroup-v1 | --cgroup2]
#   --cgroup-v1  run in a private mount namespace without the cgroup2 mount
#                (pure v1 as the runtimes see it; crun accepts that layout)
#   --cgroup2    run in a private mount namespace whose /sys/fs/cgroup is a
#                cgroup2 mount only (pure unified, as on current distros)
# Env:   SKIFF (default target/dist/skiff, the static build of scripts/build.sh,
#        rebuilt when out of date), RUNC, CRUN.
#
# Host note: crun 1.8 refuses a hybrid cgroup layout whose cgroup2 mount holds
# the hugetlb controller (as on the reference machine).  Unless
# --no-hugetlb-fix is given, this script mounts hugetlb as a v1 hierarchy at
# /sys/fs/cgroup/hugetlb, which MOVES hugetlb off cgroup2 for the whole host
# while the benchmark runs; it unmounts it again at exit (hugetlb then returns
# to cgroup2) unless --keep-hugetlb is given.  It says so when it does it.
set -euo pipefail

runs=30
fix_hugetlb=1
keep_hugetlb=0
mounted_hugetlb=0
only_skiff=0
orig_args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --no-hugetlb-fix) fix_hugetlb=0; shift ;;
    --keep-hugetlb) keep_hugetlb=1; shift ;;
    --only-skiff) only_skiff=1; shift ;;
    --cgroup-v1|--cgroup2)
      mode=$1; shift
      [ -n "${SKIFF_BENCH_NS:-}" ] && continue
      if [ "$mode" = --cgroup2 ]; then
        prep='umount -R -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup'
      else
        prep='umount /sys/fs/cgroup/unified 2>/dev/null; true'
      fi
      echo "NOTE: $mode: benchmarking in a private mount namespace ($prep)"
      exec env SKIFF_BENCH_NS=1 unshare -m --propagation private /bin/sh -c \
        "$prep && exec \"\$0\" --no-hugetlb-fix \"\$@\"" "$0" "${orig_args[@]}" ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SKIFF:-}" ]; then
  echo "building skiff (scripts/build.sh --runtime-only)..."
  SKIFF=$(bash "$repo/scripts/build.sh" --runtime-only)
fi
RUNC=${RUNC:-$(command -v runc || true)}
CRUN=${CRUN:-$(command -v crun || true)}

[ "$(id -u)" = 0 ] || { echo "bench/runtime.sh must run as root" >&2; exit 1; }
for t in hyperfine python3 /usr/bin/time busybox; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/deps.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/skiff-bench-XXXXXX)
# Container state on a tmpfs for every runtime, as /run is on a normal host
# (here /run is on the root disk, whose fsync/rename latency under load
# would dominate).
mkdir -p "$work/state"
mount -t tmpfs -o size=64m,mode=0711 tmpfs "$work/state"
cleanup() {
  for rt in skiff runc crun; do
    bin_var=${rt^^}; bin=${!bin_var:-}
    [ -n "$bin" ] && [ -x "$bin" ] || continue
    for id in "b-$rt-run" "b-$rt-life" "b-$rt-rss"; do
      "$bin" --root "$work/state/$rt" delete -f "$id" >/dev/null 2>&1 || true
    done
  done
  umount -l "$work/state" 2>/dev/null || true
  rm -rf "$work"
  if [ $mounted_hugetlb = 1 ] && [ $keep_hugetlb = 0 ]; then
    umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
    echo "NOTE: unmounted the v1 hugetlb hierarchy again (hugetlb is back on cgroup2)"
  fi
}
trap cleanup EXIT

# --- the bundle: static busybox + applet symlinks, runc spec's config
bundle=$work/bundle
mkdir -p "$bundle/rootfs"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc}
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for app in $("$bundle/rootfs/bin/busybox" --list-full); do
  [ -e "$bundle/rootfs/$app" ] || ln -s /bin/busybox "$bundle/rootfs/$app"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"
spec_bin=${RUNC:-$SKIFF}
(cd "$bundle" && "$spec_bin" spec)
python3 - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
# runc spec lists ambient caps without an inheritable set: the kernel refuses
# to raise them and runc/crun silently end with an empty ambient set.  Drop
# the list so every runtime does the same (valid) work.
c["process"]["capabilities"].pop("ambient", None)
json.dump(c, open(p, "w"), indent=1)
EOF

# --- crun and the hybrid cgroup layout
runtimes=(skiff)
if [ $only_skiff = 0 ]; then
  [ -n "$RUNC" ] && runtimes+=(runc)
  if [ -n "$CRUN" ]; then
    if ! "$CRUN" --root "$work/state/crun" run -b "$bundle" b-crun-probe >/dev/null 2>&1; then
      if [ $fix_hugetlb = 1 ] && ! mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null \
         && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
        echo "NOTE: crun refuses hugetlb on cgroup2 in this hybrid layout; mounting hugetlb as a v1"
        echo "      hierarchy at /sys/fs/cgroup/hugetlb (moves hugetlb off cgroup2 host-wide"
        echo "      until this script exits; --keep-hugetlb leaves it mounted)"
        mkdir -p /sys/fs/cgroup/hugetlb
        if mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
          mounted_hugetlb=1
        else
          rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
          echo "NOTE: hugetlb could not be moved: it is enabled in a cgroup2 subtree_control"
          echo "      ($(grep -l hugetlb /sys/fs/cgroup/unified/cgroup.subtree_control \
                 /sys/fs/cgroup/unified/*/cgroup.subtree_control 2>/dev/null | tr '\n' ' '))."
          echo "      Moving it would need those cgroups emptied first; not done here."
        fi
      fi
      "$CRUN" --root "$work/state/crun" delete -f b-crun-probe >/dev/null 2>&1 || true
    else
      "$CRUN" --root "$work/state/crun" delete -f b-crun-probe >/dev/null 2>&1 || true
    fi
    if "$CRUN" --root "$work/state/crun" run -b "$bundle" b-crun-probe >/dev/null 2>&1; then
      runtimes+=(crun)
    else
      echo "WARNING: crun cannot run the bundle here; leaving it out"
      "$CRUN" --root "$work/state/crun" delete -f b-crun-probe >/dev/null 2>&1 || true
    fi
  fi
fi

# sanity: every runtime must run the bundle before it is timed
for rt in "${runtimes[@]}"; do
  bin_var=${rt^^}; bin=${!bin_var}
  if ! "$bin" --root "$work/state/$rt" run -b "$bundle" "b-$rt-run" </dev/null; then
    echo "ERROR: $rt ($bin) cannot run the bundle" >&2
    exit 1
  fi
done

# --- one hyperfine run with every command
args=()
for rt in "${runtimes[@]}"; do
  bin_var=${rt^^}; bin=${!bin_var}
  st=$work/state/$rt
  args+=(-n "$rt run" "$bin --root $st run -b $bundle b-$rt-run")
done
for rt in "${runtimes[@]}"; do
  bin_var=${rt^^}; bin=${!bin_var}
  st=$work/state/$rt
  args+=(-n "$rt create+start+delete"
    "$bin --root $st create -b $bundle b-$rt-life && $bin --root $st start b-$rt-life && $bin --root $st delete -f b-$rt-life")
done
hyperfine --warmup 3 --runs "$runs" --style basic --export-json "$work/hyperfine.json" "${args[@]}"

# --- (c) isolated starts: `run` after 50 ms of idleness each time, as on a
# host where containers start now and then. Back to back (a), the kernel's
# RCU state stays warm between runs and a cgroup v1 migration (cgroup.procs
# write) costs little; after a pause it waits for a full RCU grace period.
iso_args=()
for rt in "${runtimes[@]}"; do
  bin_var=${rt^^}; bin=${!bin_var}
  st=$work/state/$rt
  iso_args+=(-n "$rt run" "$bin --root $st run -b $bundle b-$rt-run")
done
iso_runs=$(( runs < 20 ? runs : 20 ))
hyperfine --warmup 1 --runs "$iso_runs" --prepare 'sleep 0.05' --style basic \
  --export-json "$work/isolated.json" "${iso_args[@]}"

# --- peak RSS of `run` (max over 5 runs)
declare -A rss
for rt in "${runtimes[@]}"; do
  bin_var=${rt^^}; bin=${!bin_var}
  max=0
  for _ in 1 2 3 4 5; do
    kb=$( { /usr/bin/time -v "$bin" --root "$work/state/$rt" run -b "$bundle" "b-$rt-rss" </dev/null >/dev/null; } 2>&1 |
          awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')
    [ "${kb:-0}" -gt "$max" ] && max=$kb
  done
  rss[$rt]=$max
done

# --- summary and ratios
rss_args=()
for rt in "${runtimes[@]}"; do rss_args+=("$rt=${rss[$rt]}"); done
python3 - "$work/hyperfine.json" "$work/isolated.json" "${rss_args[@]}" <<'EOF'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
iso = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
rss = dict(a.split("=") for a in sys.argv[3:])
rts = list(rss)
print()
def mmm(r):
    return f"{r['mean']*1000:5.1f}/{r['median']*1000:5.1f}/{r['min']*1000:5.1f}"
print(f"{'runtime':8} {'run ms mean/median/min':>24} {'c+s+d ms mean/median/min':>26} {'peak RSS':>10}")
for rt in rts:
    r = res.get(f"{rt} run"); l = res.get(f"{rt} create+start+delete")
    print(f"{rt:8} {mmm(r):>24} {mmm(l):>26} {int(rss[rt])/1024:6.1f} MiB")
def ratio(a, b):
    if a not in rts or b not in rts:
        return
    def rat(cmd, k):
        return res[f"{a} {cmd}"][k] / res[f"{b} {cmd}"][k]
    ma = int(rss[a]) / max(1, int(rss[b]))
    print(f"{a}/{b}: run {rat('run','mean'):.2f}x mean, {rat('run','median'):.2f}x median, "
          f"{rat('run','min'):.2f}x min; create+start+delete {rat('create+start+delete','mean'):.2f}x mean, "
          f"{rat('create+start+delete','median'):.2f}x median, {rat('create+start+delete','min'):.2f}x min; "
          f"peak RSS {ma:.2f}x")
print()
ratio("skiff", "crun")
ratio("skiff", "runc")
print()
print("isolated starts (run after 50 ms idle), ms mean/median/min:")
for rt in rts:
    print(f"  {rt:8} {mmm(iso[f'{rt} run']):>24}")
for other in ("crun", "runc"):
    if other in rts:
        a, b = iso["skiff run"], iso[f"{other} run"]
        print(f"skiff/{other} isolated run: {a['mean']/b['mean']:.2f}x mean, "
              f"{a['median']/b['median']:.2f}x median, {a['min']/b['min']:.2f}x min")
print("target: skiff/crun <= 0.6x time, <= 1.0x peak RSS")
EOF
