#!/usr/bin/env bash
# Installs skiff from target/dist/ (building it with scripts/build.sh when
# missing):
#
#   PREFIX/bin/skiff, skiff-tools [, containerd-shim-skiff-v2]
#   PREFIX/libexec/skiff/skiff-agent          (found by skiff from bin/)
#   PREFIX/share/man/man8/skiff*.8            (one page per subcommand)
#   PREFIX/share/bash-completion/completions/skiff
#   PREFIX/share/zsh/site-functions/_skiff
#   PREFIX/share/fish/vendor_completions.d/skiff.fish
#   PREFIX/share/doc/skiff/examples/          (containerd, podman, docker,
#                                              Kubernetes configurations)
#   PREFIX/share/skiff/install-manifest       (what was installed)
#
# Usage: scripts/install.sh [--prefix /usr/local] [--destdir DIR] [--from DIST] [--uninstall]
#   --destdir DIR   stage under DIR (packaging): files go to DIR/PREFIX/...
#   --from DIST     take the binaries from DIST (default target/dist)
#   --uninstall     remove exactly the files and directories the manifest lists
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
destdir=
from=
uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --destdir) destdir=$2; shift 2 ;;
    --destdir=*) destdir=${1#--destdir=}; shift ;;
    --from) from=$2; shift 2 ;;
    --from=*) from=${1#--from=}; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be absolute: $prefix" >&2; exit 2 ;;
esac
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir=$(cd "$destdir" && pwd)
fi
root=$destdir$prefix
manifest_rel=share/skiff/install-manifest
manifest=$root/$manifest_rel

if [ $uninstall = 1 ]; then
  if [ ! -f "$manifest" ]; then
    echo "install.sh: nothing to uninstall: no manifest at $manifest" >&2
    exit 1
  fi
  # Paths in the manifest are under PREFIX, without DESTDIR. Files first
  # (the manifest is one of them), then the directories the install
  # created, deepest first, each only if empty.
  listed=$(cat "$manifest")
  grep '^file ' <<< "$listed" | cut -c6- | while IFS= read -r f; do
    rm -f "$destdir$f"
  done
  grep '^dir ' <<< "$listed" | cut -c5- | sort -r | while IFS= read -r d; do
    rmdir "$destdir$d" 2>/dev/null || true
  done
  echo "install.sh: removed the $(grep -c '^file ' <<< "$listed") files $prefix/$manifest_rel listed"
  exit 0
fi

dist=${from:-$repo/target/dist}
if [ ! -x "$dist/skiff" ] || [ ! -x "$dist/skiff-tools" ]; then
  if [ -n "$from" ]; then
    echo "install.sh: $from has no skiff and skiff-tools (run scripts/build.sh $from)" >&2
    exit 1
  fi
  echo "install.sh: building first (scripts/build.sh)" >&2
  bash "$repo/scripts/build.sh" "$dist" >/dev/null
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
entries=()
# A reinstall keeps the directories an earlier install created.
if [ -f "$manifest" ]; then
  while IFS= read -r e; do entries+=("$e"); done < <(grep '^dir ' "$manifest")
fi
# Creates the directories of $1 (a path under PREFIX) that are missing and
# remembers them for --uninstall.
mkdirs() {
  local d=$1 missing=()
  while [ "$d" != / ] && [ ! -d "$destdir$d" ]; do missing+=("$d"); d=$(dirname "$d"); done
  for d in "${missing[@]}"; do entries+=("dir $d"); done
  mkdir -p "$destdir$1"
}
# put MODE SRC DEST-UNDER-PREFIX
put() {
  mkdirs "$(dirname "$prefix/$3")"
  install -m "$1" "$2" "$destdir$prefix/$3"
  entries+=("file $prefix/$3")
}

put 0755 "$dist/skiff" bin/skiff
put 0755 "$dist/skiff-tools" bin/skiff-tools
[ -x "$dist/containerd-shim-skiff-v2" ] && put 0755 "$dist/containerd-shim-skiff-v2" bin/containerd-shim-skiff-v2
if [ -x "$dist/skiff-agent" ]; then
  put 0755 "$dist/skiff-agent" libexec/skiff/skiff-agent
else
  echo "install.sh: no $dist/skiff-agent: --isolation vm will not work (see scripts/build.sh)" >&2
fi

"$dist/skiff-tools" man "$stage/man"
for page in "$stage"/man/*.8; do
  put 0644 "$page" "share/man/man8/$(basename "$page")"
done
"$dist/skiff-tools" completion bash > "$stage/skiff.bash"
"$dist/skiff-tools" completion zsh > "$stage/_skiff"
"$dist/skiff-tools" completion fish > "$stage/skiff.fish"
put 0644 "$stage/skiff.bash" share/bash-completion/completions/skiff
put 0644 "$stage/_skiff" share/zsh/site-functions/_skiff
put 0644 "$stage/skiff.fish" share/fish/vendor_completions.d/skiff.fish

# Example engine configurations, with this prefix's paths.
(cd "$repo/packaging" && find . -type f | sort) | while IFS= read -r f; do
  f=${f#./}
  mkdir -p "$stage/examples/$(dirname "$f")"
  sed "s|/usr/local/|$prefix/|g" "$repo/packaging/$f" > "$stage/examples/$f"
  chmod --reference="$repo/packaging/$f" "$stage/examples/$f"
  echo "$f"
done > "$stage/example-list"
while IFS= read -r f; do
  mode=0644
  [ -x "$stage/examples/$f" ] && mode=0755
  put "$mode" "$stage/examples/$f" "share/doc/skiff/examples/$f"
done < "$stage/example-list"

mkdirs "$(dirname "$prefix/$manifest_rel")"
entries+=("file $prefix/$manifest_rel")
printf '%s\n' "${entries[@]}" | awk '!seen[$0]++' > "$manifest"
echo "install.sh: installed into $root ($(grep -c '^file ' "$manifest") files; manifest $prefix/$manifest_rel)"
