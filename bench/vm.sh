#!/usr/bin/env bash
# VM isolation benchmark: time to the container's first instruction and back,
# VM (skiff-vm, QEMU microvm) booted cold vs restored from a VM template vs
# namespace container, with kernel and initramfs cached; boot breakdown and
# peak host RSS of the VMM per VM.
#
#   bash bench/vm.sh [runs]        (default 5; root; QEMU, busybox-static)
#   SKIFF_VM_KERNEL=/boot/vmlinuz-... bash bench/vm.sh   # another kernel (e.g. Debian's)
#
# By default the guest kernel is the minimal one of scripts/vm-kernel.sh
# (built on first use, ~6 min on 2 idle cores, then cached).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 missing" >&2; exit 0; }
[ -x /bin/busybox ] || { echo "SKIP: /bin/busybox missing" >&2; exit 0; }

export SKIFF_VM_KERNEL=${SKIFF_VM_KERNEL:-$(bash scripts/vm-kernel.sh)}
echo "# kernel: $SKIFF_VM_KERNEL"
bash scripts/build.sh --only agent >/dev/null
cargo build -q -p skiff-vm --release --example vm-run
vmrun=target/release/examples/vm-run
export SKIFF_AGENT=${CARGO_TARGET_DIR:-$PWD/target}/dist/skiff-agent

work=$(mktemp -d /tmp/skiff-vm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
b=$work/bundle
mkdir -p $b/rootfs/{bin,proc,dev,tmp}
cp /bin/busybox $b/rootfs/bin/
for a in sh true; do ln -s busybox $b/rootfs/bin/$a; done
cat > $b/config.json <<JSON
{"ociVersion":"1.0.2","root":{"path":"rootfs"},"hostname":"bench",
 "process":{"args":["/bin/true"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}},
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
 "annotations":{"run.skiff.isolation":"vm"},
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"}]}}
JSON

# The same container with a docker-sized seccomp profile (podman's default,
# the rules that apply to x86_64 without extra capabilities), as podman,
# docker and containerd pass one: compiled on the host for the guest.
bs=$work/bundle-seccomp
mkdir -p $bs && ln -s ../bundle/rootfs $bs/rootfs
python3 - $b/config.json $bs/config.json <<'PY'
import json, sys, os
c = json.load(open(sys.argv[1]))
src = "/usr/share/containers/seccomp.json"
rules = []
if os.path.exists(src):
    d = json.load(open(src))
    for s in d["syscalls"]:
        inc, exc = s.get("includes") or {}, s.get("excludes") or {}
        if inc.get("caps") or inc.get("minKernel"):
            continue
        if inc.get("arches") and not set(inc["arches"]) & {"amd64", "x86_64", "x32"}:
            continue
        if "amd64" in (exc.get("arches") or []):
            continue
        r = {"names": s["names"], "action": s["action"]}
        for k in ("args", "errnoRet"):
            if s.get(k):
                r[k] = s[k]
        rules.append(r)
    c["linux"]["seccomp"] = {"defaultAction": d["defaultAction"], "defaultErrnoRet": d.get("defaultErrnoRet", 1),
                             "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}
json.dump(c, open(sys.argv[2], "w"))
print("# seccomp profile: %d rules, %d syscalls (%s)" % (len(rules), sum(len(r["names"]) for r in rules), src if rules else "none found"))
PY
# Which clocksource the template's guest runs on (tsc expected; on
# refined-jiffies every timer is a 10 ms tick).
bc=$work/bundle-clock
mkdir -p $bc && ln -s ../bundle/rootfs $bc/rootfs
python3 - $b/config.json $bc/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs"})
c["process"]["args"] = ["/bin/sh", "-c", "read c < /sys/devices/system/clocksource/clocksource0/current_clocksource; echo $c"]
json.dump(c, open(sys.argv[2], "w"))
PY
mkdir -p $b/rootfs/sys

echo "# warm-up (fills the kernel/initramfs cache and builds the VM template)"
$vmrun $b >/dev/null
SKIFF_VM_TEMPLATE=0 $vmrun $b >/dev/null
$vmrun $bs >/dev/null
echo "# guest clocksource (template): $($vmrun $bc 2>/dev/null | head -1)"
echo "# $runs rounds of VM runs of /bin/true, interleaved: cold boot, restored from the template,"
echo "# restored with the docker-sized seccomp profile"
echo "# (ms since create was called; kernel = guest uptime at /init of the boot that made the VM or its template)"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: > $work/runs.jsonl
run() { local label=$1; shift; printf '{"label":"%s","r":%s}\n' "$label" "$("$@")" >> $work/runs.jsonl; }
for i in $(seq "$runs"); do
  run cold env SKIFF_VM_TEMPLATE=0 $vmrun $b
  run template $vmrun $b
  run seccomp $vmrun $bs
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - $work/runs.jsonl <<'PY'
import json, sys, statistics
rows = []
for l in open(sys.argv[1]):
    x = json.loads(l)
    x["r"]["label"] = x["label"]
    rows.append(x["r"])
cols = [("create", lambda r: r["create_ms"]), ("start", lambda r: r["start_ms"]), ("exit", lambda r: r["exit_ms"]),
        ("vmm_up", lambda r: r["vm"].get("vmm_restored_ms") or r["vm"].get("vmm_listening_ms")),
        ("kernel", lambda r: r["vm"].get("guest_kernel_ms")), ("hello", lambda r: r["vm"].get("agent_hello_ms")),
        ("created", lambda r: r["vm"].get("created_ms")), ("rss_MiB", lambda r: (r["vm"].get("vmm_peak_rss_kb") or 0) / 1024)]
print("%-9s" % "run" + "".join("%-9s" % c for c, _ in cols))
for r in rows:
    print("%-9s" % r["label"][:8] + "".join("%-9.0f" % (f(r) or 0) for _, f in cols))
for label in ("cold", "template", "seccomp"):
    sel = [r for r in rows if r["label"] == label]
    if not sel:
        continue
    want = "cold" if label == "cold" else "template"
    wrong = [r["vm"].get("boot") for r in sel if r["vm"].get("boot") != want or r.get("status") != 0]
    if wrong:
        print("# %s: %d runs not as expected (boot %s or non-zero exit)" % (label, len(wrong), wrong))
    for name, agg in (("min", min), ("median", statistics.median), ("max", max)):
        print("%-9s" % (label[:4] + "-" + name[:3]) + "".join("%-9.0f" % agg([f(r) or 0 for r in sel]) for _, f in cols))
PY

echo "# namespace container, same bundle (run = create+start+wait+delete)"
sed -i 's/"run.skiff.isolation":"vm"/"run.skiff.isolation":"namespace"/' $b/config.json
if [ -x target/release/skiff ] && target/release/skiff --help 2>/dev/null | grep -q run; then
  rt=target/release/skiff
else rt=runc; fi   # crun refuses this host's hybrid cgroups
if command -v hyperfine >/dev/null; then
  echo "runtime: $rt"
  hyperfine -N -w 2 -r "$runs" "$rt --root $work/ns run -b $b bench-ns" 2>&1 | grep -E "Time|Range|rror" || true
else
  time (for i in $(seq "$runs"); do $rt --root $work/ns run -b $b bench-ns >/dev/null; done)
fi
echo "# accel: $(python3 -c 'import json,glob; print(open(glob.glob("/var/cache/skiff/vm/kvm-probe-*")[0]).read())' 2>/dev/null || echo '?')"
