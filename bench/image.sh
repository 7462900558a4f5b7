#!/usr/bin/env bash
# Image pull+unpack benchmark on one synthetic multi-layer image (~200 MB of
# gzip layers) served by Debian's docker-registry on 127.0.0.1:
#   skiff image pull (download + verify + unpack into snapshots)
#   skopeo copy docker://... oci:  +  umoci unpack
#   podman pull (fresh storage)
#   floor: gzip -dc of the same layer blobs, one after the other
# Needs root, docker-registry, skopeo, umoci, podman, hyperfine, python3.
# Usage: bench/image.sh [runs]   (prints mean times and ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
LAYERS=${LAYERS:-4}
LAYER_MB=${LAYER_MB:-100}   # uncompressed MB per layer
W=$(mktemp -d /tmp/skiff-bench-image.XXXXXX)
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
  umount -l "$W"/podman/root/overlay 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# SKIFF_BIN=path skips the build (e.g. when the target dir is busy).
if [ -n "${SKIFF_BIN:-}" ]; then
  SKIFF=$SKIFF_BIN
else
  cargo build --release -p skiff >/dev/null 2>&1 || cargo build --release -p skiff
  SKIFF=$PWD/target/release/skiff
fi

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$W/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$W/registry.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== building a ${LAYERS}-layer image (${LAYER_MB} MB uncompressed per layer)"
umoci init --layout "$W/src" >/dev/null
umoci new --image "$W/src:t" >/dev/null
for i in $(seq "$LAYERS"); do
  rm -rf "$W/b"
  umoci unpack --image "$W/src:t" "$W/b" >/dev/null
  # Files of mixed compressibility: text, base64 noise, raw noise, binaries.
  python3 - "$W/b/rootfs/layer$i" "$LAYER_MB" "$i" <<'PY'
import os, random, sys, base64
root, mb, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(seed)
os.makedirs(root, exist_ok=True)
total, n = 0, 0
words = open('/usr/share/dict/words').read().split() if os.path.exists('/usr/share/dict/words') else ['skiff', 'layer', 'image', 'oci', 'registry', 'blob', 'digest']
while total < mb << 20:
    d = os.path.join(root, f"d{n % 50}")
    os.makedirs(d, exist_ok=True)
    size = random.choice([512, 4096, 16384, 65536, 262144, 1048576])
    kind = n % 4
    if kind == 0:
        data = (' '.join(random.choice(words) for _ in range(size // 6 + 1))).encode()[:size]
    elif kind == 1:
        data = base64.b64encode(os.urandom(size * 3 // 4))[:size]
    elif kind == 2:
        data = os.urandom(size // 4) + bytes(size - size // 4)
    else:
        data = bytes(random.getrandbits(8) & 0x0f for _ in range(min(size, 65536)))
    with open(os.path.join(d, f"f{n}"), 'wb') as f:
        f.write(data)
    total += len(data); n += 1
PY
  umoci repack --image "$W/src:t" "$W/b" >/dev/null
done
REF=127.0.0.1:$PORT/bench/synthetic:t
skopeo copy --quiet --dest-tls-verify=false "oci:$W/src:t" "docker://$REF"
M=$(python3 -c "import json,sys;print(json.load(open('$W/src/index.json'))['manifests'][0]['digest'].split(':')[1])")
LAYER_FILES=$(python3 -c "
import json
m=json.load(open('$W/src/blobs/sha256/$M'))
print(' '.join('$W/src/blobs/sha256/'+l['digest'].split(':')[1] for l in m['layers']))")
SIZE=$(du -cb $LAYER_FILES | tail -1 | cut -f1)
echo "== image: $REF, $(echo $LAYER_FILES | wc -w) layers, $((SIZE / 1048576)) MiB compressed"

mkdir -p "$W/podman"
hyperfine --runs "$RUNS" --export-json "$W/results.json" --style basic \
  -n skiff --prepare "rm -rf $W/skiff" "$SKIFF --store $W/skiff image pull -q $REF" \
  -n skopeo+umoci --prepare "rm -rf $W/oci $W/bundle" \
     "skopeo copy --quiet --src-tls-verify=false docker://$REF oci:$W/oci:t && umoci unpack --image $W/oci:t $W/bundle >/dev/null" \
  -n podman --prepare "podman --root $W/podman/root --runroot $W/podman/run system reset -f >/dev/null 2>&1 || true; rm -rf $W/podman/root $W/podman/run" \
     "podman --root $W/podman/root --runroot $W/podman/run --storage-driver overlay pull -q --tls-verify=false $REF" \
  -n zcat-floor --prepare true "cat $LAYER_FILES | gzip -dc >/dev/null"

python3 - "$W/results.json" <<'PY'
import json, sys
r = {x['command']: x['mean'] for x in json.load(open(sys.argv[1]))['results']}
s = r['skiff']
print()
print(f"{'tool':<14}{'mean s':>9}{'vs skiff':>10}")
for k, v in r.items():
    print(f"{k:<14}{v:>9.2f}{v / s:>9.2f}x")
print()
print(f"skiff is {r['skopeo+umoci'] / s:.2f}x faster than skopeo+umoci (target >= 2x)")
print(f"skiff is {r['podman'] / s:.2f}x faster than podman (target > 1x)")
print(f"skiff / zcat floor = {s / r['zcat-floor']:.2f} (target <= 1.5)")
PY
