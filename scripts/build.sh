#!/usr/bin/env bash
# Builds skiff for use (release) into target/dist/ (or $1):
#
#   skiff        the runtime alone, linked statically (glibc, libseccomp) and
#                non-PIE: no dynamic loader, no shared libraries to map and
#                relocate at every container start (peak RSS of `run`
#                3.8 -> 2.7 MiB here, ~10% less time; docs/runtime.md)
#   skiff-tools  images and registry (`skiff image|registry|run --image`
#                exec it from the same directory); dynamically linked, as
#                it resolves registry host names through glibc's NSS
#
# Usage: scripts/build.sh [--runtime-only] [DESTDIR]   (prints DESTDIR/skiff)
# `cargo build --release -p skiff` alone gives working dynamic binaries in
# target/release/ (what the tests use).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tools=1
if [ "${1:-}" = --runtime-only ]; then tools=0; shift; fi
dest=${1:-$repo/target/dist}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
host=$(rustc -vV | sed -n 's/^host: //p')
cd "$repo"
[ $tools = 1 ] && cargo build --release -q -p skiff --bin skiff-tools
static_ok=1
case "$host" in
  *-linux-gnu) ;;
  *) static_ok=0 ;;
esac
libdir=$(dirname "$(gcc -print-file-name=libseccomp.a 2>/dev/null || echo /nonexistent/x)")
[ -f "$libdir/libseccomp.a" ] && libdir=$(cd "$libdir" && pwd -P) || static_ok=0
if [ $static_ok = 1 ]; then
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$libdir \
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release -q -p skiff --bin skiff --no-default-features --target "$host"
  runtime=$target_dir/$host/release/skiff
else
  echo "build.sh: no static libseccomp.a or not a glibc host: skiff stays dynamic" >&2
  runtime=$target_dir/release/skiff
  cargo build --release -q -p skiff --bin skiff --no-default-features
fi
mkdir -p "$dest"
install -m 0755 "$runtime" "$dest/skiff.tmp" && mv -f "$dest/skiff.tmp" "$dest/skiff"
if [ $tools = 1 ]; then
  install -m 0755 "$target_dir/release/skiff-tools" "$dest/skiff-tools.tmp" &&
    mv -f "$dest/skiff-tools.tmp" "$dest/skiff-tools"
fi
echo "$dest/skiff"
