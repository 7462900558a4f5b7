#!/usr/bin/env bash
# Runs each cargo-fuzz target under fuzz/ for a bounded time. Not run in CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, all targets)
#
# Needs cargo-fuzz (installed from crates.io if missing) and either a nightly
# toolchain or RUSTC_BOOTSTRAP=1 on stable (set automatically when no nightly is
# installed). New inputs go to fuzz/corpus/<target>/ (git-ignored), seeds are read
# from fuzz/seeds/<target>/, a dictionary from fuzz/<target>.dict. A crash leaves
# its input under fuzz/artifacts/<target>/: reproduce it with
#   cargo fuzz run --fuzz-dir fuzz <target> <artifact>
# and turn it into a regular test of the crate at fault.
#
# Targets: config_json (config.json parsing + seccomp compile, docs/seccomp.md),
# resolve_in_root (the in-rootfs path resolver, docs/security.md; as root it
# works in a private mount namespace on its own tmpfs with a procfs inside the
# scratch rootfs, without root it runs without that procfs).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[ $# -gt 0 ] && shift

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
tc=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "${tc[@]}" fuzz list --fuzz-dir fuzz)
fi

failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  dirs=("$corpus")
  [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "fuzz/$t.dict" ] && opts+=(-dict="fuzz/$t.dict")
  echo "fuzz: $t for ${secs}s"
  if ! cargo "${tc[@]}" fuzz run --fuzz-dir fuzz "$t" "${dirs[@]}" -- "${opts[@]}"; then
    failed+=("$t")
  fi
done

# resolve_in_root leaves its (empty) scratch mount points behind.
# (Only those of exited fuzzers: removing a live one would detach its tmpfs.)
for d in "${TMPDIR:-/tmp}"/skiff-fuzz-resolve-*; do
  [ -d "$d" ] && [ ! -d "/proc/${d##*-}" ] && rmdir "$d" 2>/dev/null || true
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all targets ran ${secs}s without a failure"
