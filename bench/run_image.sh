#!/usr/bin/env bash
# `skiff run --rm --image` vs `podman run --rm`, one hyperfine run, side by
# side: the default network of each (skiff: its `skiff0` bridge through the
# CNI plugins; podman 4.3 here: its CNI `podman` bridge) and `--network none`.
# Both run the same image: skiff's embedded busybox `skiff/default`, exported
# as an oci-archive and loaded into a private podman storage.
# Needs root, podman, hyperfine, containernetworking-plugins.
# Usage: bench/run_image.sh [runs]   (SKIFF_BIN=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
W=$(mktemp -d /tmp/skiff-bench-run-image.XXXXXX)
# crun refuses this host's hybrid cgroups: podman runs runc (its other default).
PODMAN=(podman --root "$W/podman/root" --runroot "$W/podman/run" --storage-driver overlay --runtime runc)
cleanup() {
  "${PODMAN[@]}" rm -af >/dev/null 2>&1 || true
  umount -l "$W"/podman/root/overlay 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

if [ -n "${SKIFF_BIN:-}" ]; then
  SKIFF=$SKIFF_BIN
else
  cargo build --release -p skiff >/dev/null 2>&1 || cargo build --release -p skiff
  SKIFF=$PWD/target/release/skiff
fi
SK=("$SKIFF" --store "$W/store" --root "$W/state")

"${SK[@]}" image pull -q skiff/default >/dev/null
"${SK[@]}" image export skiff/default "$W/img.tar"
"${PODMAN[@]}" load -q -i "$W/img.tar" >/dev/null
IMG=docker.io/skiff/default:latest
# podman's default nofile (1048576) is above this host's hard limit.
LIM="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"

# First use creates the networks (bridges, chains): not measured.
"${SK[@]}" run --rm --image skiff/default -- true
"${PODMAN[@]}" run --rm $LIM "$IMG" true

hyperfine -N -w 3 -r "$RUNS" --export-json "$W/h.json" \
  -n "skiff default network" "${SK[*]} run --rm --image skiff/default -- true" \
  -n "podman default network" "${PODMAN[*]} run --rm $LIM $IMG true" \
  -n "skiff --network none" "${SK[*]} run --rm --image skiff/default --network none -- true" \
  -n "podman --network none" "${PODMAN[*]} run --rm --network none $LIM $IMG true"

python3 - "$W/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
for net in ("default network", "--network none"):
    s, p = r[f"skiff {net}"], r[f"podman {net}"]
    print(f"{net:16s} skiff {s['mean']*1e3:7.1f} ms (median {s['median']*1e3:.1f})  "
          f"podman {p['mean']*1e3:7.1f} ms (median {p['median']*1e3:.1f})  ratio {s['mean']/p['mean']:.2f}x")
PY
