#!/usr/bin/env bash
# Installs the Debian packages skiff's build, tests and demo need (idempotent).
set -euo pipefail
pkgs=(busybox-static libseccomp-dev pkg-config runc crun skopeo umoci podman containerd
      docker-registry qemu-system-x86 linux-image-amd64 erofs-utils hyperfine time iproute2 cpio wrk
      uidmap gcc libc6-dev containernetworking-plugins iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# A local S3 server for the registry's S3 backend test (PyPI).
if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install -q 'moto[server]' || echo "deps: could not install moto (the S3 test will SKIP)"
fi
# The vhost-user vsock backend for the VM's hybrid vsock channel (crates.io; ~70 s to build).
command -v vhost-device-vsock >/dev/null 2>&1 || [ -x /usr/local/bin/vhost-device-vsock ] ||
  cargo install --locked vhost-device-vsock --version 0.3.0 --root /usr/local || echo "deps: could not install vhost-device-vsock (the vsock test will SKIP)"
