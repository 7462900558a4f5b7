#!/usr/bin/env bash
# Builds everything skiff installs (release) into target/dist/ (or DESTDIR):
#
#   skiff        the runtime alone, linked statically (glibc, libseccomp) and
#                non-PIE: no dynamic loader, no shared libraries to map and
#                relocate at every container start (peak RSS of `run`
#                3.8 -> 2.7 MiB here, ~10% less time; docs/runtime.md)
#   skiff-tools  images, registry, `check`, completions and man pages
#                (`skiff image|registry|check|completion|run --image` exec it
#                from the same directory); dynamically linked, as it
#                resolves registry host names through glibc's NSS
#   skiff-agent  the guest /init of `--isolation vm`, static (it runs alone
#                in the VM's initramfs); skiff finds it next to itself
#   containerd-shim-skiff-v2
#                containerd's shim for skiff, when crates/shim exists
#
# Usage: scripts/build.sh [--only LIST] [--runtime-only] [DESTDIR]
#   --only LIST      comma-separated subset of: skiff,skiff-tools,agent,shim
#   --runtime-only   same as --only skiff
# Prints DESTDIR/skiff. Reuses target/ (or $CARGO_TARGET_DIR): a second run
# with nothing changed only copies. Progress goes to stderr.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
only=skiff,skiff-tools,agent,shim
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime-only) only=skiff; shift ;;
    --only) only=$2; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
dest=${1:-}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
dest=${dest:-$target_dir/dist}
host=$(rustc -vV | sed -n 's/^host: //p')
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
say() { echo "build.sh: $*" >&2; }
cd "$repo"
mkdir -p "$dest"

# Copies $1 to $dest/$2 atomically (a unique temporary name: concurrent
# test processes may run this script at once), unless already identical.
put() {
  if cmp -s "$1" "$dest/$2"; then return 0; fi
  install -m 0755 "$1" "$dest/$2.tmp.$$" && mv -f "$dest/$2.tmp.$$" "$dest/$2"
}

# The static link: glibc's crt-static plus libseccomp.a, for an explicit
# --target (which keeps the flags away from build scripts and proc macros).
static_ok=1
case "$host" in
  *-linux-gnu) ;;
  *) static_ok=0 ;;
esac
libdir=$(dirname "$(gcc -print-file-name=libseccomp.a 2>/dev/null || echo /nonexistent/x)")
[ -f "$libdir/libseccomp.a" ] && libdir=$(cd "$libdir" && pwd -P) || static_ok=0
static_cargo() {
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$libdir \
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release -q --target "$host" "$@"
}

if wants skiff-tools; then
  say "skiff-tools (release)"
  cargo build --release -q -p skiff --bin skiff-tools
  put "$target_dir/release/skiff-tools" skiff-tools
fi

if wants skiff; then
  if [ $static_ok = 1 ]; then
    say "skiff (release, static)"
    static_cargo -p skiff --bin skiff --no-default-features
    put "$target_dir/$host/release/skiff" skiff
  else
    say "no static libseccomp.a (libseccomp-dev) or not a glibc host: skiff stays dynamic"
    cargo build --release -q -p skiff --bin skiff --no-default-features
    put "$target_dir/release/skiff" skiff
  fi
fi

if wants agent; then
  if [ $static_ok = 1 ]; then
    say "skiff-agent (release, static)"
    static_cargo -p skiff-agent --bin skiff-agent
    put "$target_dir/$host/release/skiff-agent" skiff-agent
  else
    say "skipping skiff-agent: it must be static (install libseccomp-dev); --isolation vm will not work"
  fi
fi

if wants shim && [ -f crates/shim/Cargo.toml ]; then
  say "containerd-shim-skiff-v2 (release)"
  cargo build --release -q -p "$(sed -n 's/^name *= *"\(.*\)"/\1/p' crates/shim/Cargo.toml | head -1)"
  put "$target_dir/release/containerd-shim-skiff-v2" containerd-shim-skiff-v2
fi
echo "$dest/skiff"
