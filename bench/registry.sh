#!/usr/bin/env bash
# Registry benchmark: skiff's registry vs Debian's docker-registry
# (distribution 2.8) on the same machine, same image, same disk.
#
#   bench/registry.sh            (builds target/release/skiff if missing)
#   SKIFF=path/to/skiff LAYER_MB=32 LAYERS=4 RUNS=3 DURATION=10 bench/registry.sh
#
# Measures: skopeo push and pull throughput (fresh storage per push run),
# blob GET throughput and p50/p99 latency with 32 concurrent clients (wrk,
# 1 MiB blob), peak RSS (VmHWM) of each server. Prints skiff/distribution
# ratios (>1 is better for skiff on throughput, <1 is better on latency/RSS).
set -euo pipefail
cd "$(dirname "$0")/.."

SKIFF=${SKIFF:-target/release/skiff}
LAYER_MB=${LAYER_MB:-32}
LAYERS=${LAYERS:-4}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}

for t in skopeo wrk docker-registry python3 curl; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/deps.sh)"; exit 0; }
done
if [ ! -x "$SKIFF" ]; then
  echo "building $SKIFF (release)..."
  cargo build --release -p skiff >/dev/null
fi

WORK=$(mktemp -d /tmp/skiff-regbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# --- test image: OCI layout with LAYERS uncompressed tar layers of random data.
python3 - "$WORK/img" "$LAYERS" "$LAYER_MB" <<'EOF'
import hashlib, io, json, os, sys, tarfile
root, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/blobs/sha256")
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{root}/blobs/sha256/{d}", "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
layers, diffs = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(mb << 20)
        ti = tarfile.TarInfo(f"layer{i}.bin"); ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    d = put(buf.getvalue())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **d})
    diffs.append(d["digest"])
cfg = json.dumps({"architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
c = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
                  "layers": layers}).encode()
m = put(man)
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{root}/oci-layout", "w"))
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           **m, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(f"{root}/index.json", "w"))
EOF
IMG_BYTES=$(du -sb "$WORK/img/blobs" | cut -f1)
head -c $((1 << 20)) /dev/urandom > "$WORK/blob1m"
BLOB_DIGEST=sha256:$(sha256sum "$WORK/blob1m" | cut -d' ' -f1)
echo "image: $LAYERS x ${LAYER_MB} MiB layers ($IMG_BYTES bytes); $RUNS runs; wrk ${DURATION}s x $CONNS conns"

# start_server <kind> <storage> <port>; sets SERVER_PID
start_server() {
  local kind=$1 dir=$2 port=$3
  mkdir -p "$dir"
  if [ "$kind" = skiff ]; then
    printf 'access_log = false\n' > "$dir.toml"
    "$SKIFF" registry serve --listen "127.0.0.1:$port" --storage "$dir" --config "$dir.toml" 2>"$dir.log" &
  else
    cat > "$dir.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
EOF
    docker-registry serve "$dir.yml" >"$dir.log" 2>&1 &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.05
  done
}

now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$IMG_BYTES/($2-$1)/1e6:.1f}')"; }

declare -A R
for kind in distribution skiff; do
  best_push=0; best_pull=0; hwm=0
  for run in $(seq "$RUNS"); do
    port=$(free_port)
    dir="$WORK/$kind-$run"
    start_server "$kind" "$dir" "$port"
    pid=$SERVER_PID
    t0=$(now)
    skopeo copy -q --dest-tls-verify=false "oci:$WORK/img:latest" "docker://127.0.0.1:$port/bench/img:v1"
    t1=$(now)
    rm -rf /dev/shm/skiff-regbench-pull
    t2=$(now)
    skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/bench/img:v1" "oci:/dev/shm/skiff-regbench-pull:latest"
    t3=$(now)
    rm -rf /dev/shm/skiff-regbench-pull
    push=$(mbps "$t0" "$t1"); pull=$(mbps "$t2" "$t3")
    echo "  $kind run $run: push $push MB/s, pull $pull MB/s"
    best_push=$(python3 -c "print(max($best_push,$push))")
    best_pull=$(python3 -c "print(max($best_pull,$pull))")
    if [ "$run" = "$RUNS" ]; then
      # POST then PUT (distribution 2.8 ignores single-POST uploads).
      loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$port/v2/bench/img/blobs/uploads/" |
        awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
      case "$loc" in http*) ;; *) loc="http://127.0.0.1:$port$loc" ;; esac
      case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
      curl -sf -X PUT --data-binary @"$WORK/blob1m" -H 'Content-Type: application/octet-stream' \
        "$loc${sep}digest=$BLOB_DIGEST" -o /dev/null
      curl -sf -o /dev/null "http://127.0.0.1:$port/v2/bench/img/blobs/$BLOB_DIGEST" ||
        { echo "blob upload to $kind failed"; exit 1; }
      out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency \
        "http://127.0.0.1:$port/v2/bench/img/blobs/$BLOB_DIGEST")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      to_ms() { python3 -c "
v='$1'
u={'us':1e-3,'ms':1,'s':1e3}
for k in ('us','ms','s'):
    if v.endswith(k): print(float(v[:-len(k)])*u[k]); break"; }
      p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
      p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
      errs=$(echo "$out" | grep -E "Non-2xx|Socket errors" || true)
      echo "  $kind blob GET: $rps req/s (1 MiB), p50 ${p50} ms, p99 ${p99} ms ${errs}"
      R[$kind.rps]=$rps; R[$kind.p50]=$p50; R[$kind.p99]=$p99
    fi
    h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    hwm=$(( h > hwm ? h : hwm ))
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  R[$kind.push]=$best_push; R[$kind.pull]=$best_pull; R[$kind.rss]=$hwm
  echo "  $kind peak RSS: $((hwm / 1024)) MiB"
done

echo
printf '%-26s %14s %14s %10s\n' figure distribution skiff ratio
row() { printf '%-26s %14s %14s %10s\n' "$1" "$2" "$3" "$(python3 -c "print(f'{$3/$2:.2f}x')")"; }
row "push MB/s (best)" "${R[distribution.push]}" "${R[skiff.push]}"
row "pull MB/s (best)" "${R[distribution.pull]}" "${R[skiff.pull]}"
row "blob GET req/s (1 MiB)" "${R[distribution.rps]}" "${R[skiff.rps]}"
row "blob GET p50 ms" "${R[distribution.p50]}" "${R[skiff.p50]}"
row "blob GET p99 ms" "${R[distribution.p99]}" "${R[skiff.p99]}"
row "peak RSS KiB" "${R[distribution.rss]}" "${R[skiff.rss]}"
