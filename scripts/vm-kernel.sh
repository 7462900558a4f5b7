#!/usr/bin/env bash
# Builds a minimal guest kernel for skiff's VM isolation from Debian's
# linux-source package: everything skiff-vm needs built in (virtio-mmio from
# the command line, virtio console/blk, 9p, virtio-fs, erofs, overlay, serial
# console, namespaces, cgroup v2 memory/pids/cpu/bpf, seccomp), no modules,
# no ACPI, no IPv6, no drivers for real hardware. Booted as an
# uncompressed PVH ELF by QEMU microvm it starts ~2-5x faster than Debian's
# kernel under TCG.
#
#   bash scripts/vm-kernel.sh            # prints the path of the vmlinux
#   SKIFF_VM_KERNEL=$(bash scripts/vm-kernel.sh) cargo test -p skiff-vm --test vm
#
# The result is cached under $SKIFF_VM_CACHE (default /var/cache/skiff/vm) as
# vmlinux-skiff-<hash of source tarball + config fragment>.
#
# The kernel has virtio-mmio command-line devices and no ACPI: skiff-vm
# detects that (the `virtio_mmio.device` parameter in the ELF) and boots it
# with `-M microvm,acpi=off,pit=on,pic=on,rtc=on` plus `nolapic_timer`
# (QEMU appends the `virtio_mmio.device=` parameters itself). See docs/vm.md
# for the measured boot times.
#
# The unpacked source tree is kept under $SKIFF_VM_KERNEL_SRC (default
# /var/tmp/skiff-vm-kernel-src) so a changed fragment rebuilds incrementally.
# Not run in CI (~6 min on 2 idle cores, 12-26 min on this shared host). Needs: linux-source-6.1 flex bison libelf-dev bc.
set -euo pipefail
cache=${SKIFF_VM_CACHE:-/var/cache/skiff/vm}
mkdir -p "$cache"

tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$tarball" ]; then
  echo "vm-kernel: installing linux-source and build deps" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    linux-source-6.1 flex bison libelf-dev bc >&2
  tarball=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -1)
fi

# Options on top of `make tinyconfig` (x86_64). Keep sorted by area.
fragment='
CONFIG_64BIT=y
CONFIG_SMP=y
CONFIG_HYPERVISOR_GUEST=y
CONFIG_PARAVIRT=y
CONFIG_KVM_GUEST=y
CONFIG_PVH=y
CONFIG_X86_MPPARSE=y
CONFIG_HZ_100=y
CONFIG_NO_HZ_IDLE=y
CONFIG_HIGH_RES_TIMERS=y
CONFIG_PRINTK=y
CONFIG_BUG=y
CONFIG_MULTIUSER=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_SHMEM=y
CONFIG_AIO=y
CONFIG_FILE_LOCKING=y
CONFIG_POSIX_TIMERS=y
CONFIG_SYSVIPC=y
CONFIG_POSIX_MQUEUE=y
CONFIG_KEYS=y
CONFIG_BPF_SYSCALL=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_TTY=y
CONFIG_UNIX98_PTYS=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_SERIAL_8250_NR_UARTS=1
CONFIG_SERIAL_8250_RUNTIME_UARTS=1
CONFIG_NET=y
CONFIG_UNIX=y
CONFIG_VSOCKETS=y
CONFIG_VIRTIO_VSOCKETS=y
CONFIG_INET=y
CONFIG_IPV6=n
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO=y
CONFIG_VIRTIO_MMIO=y
CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y
CONFIG_VIRTIO_CONSOLE=y
CONFIG_BLOCK=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_BLK=y
CONFIG_MQ_IOSCHED_DEADLINE=n
CONFIG_MQ_IOSCHED_KYBER=n
CONFIG_NET_9P=y
CONFIG_NET_9P_VIRTIO=y
CONFIG_NETWORK_FILESYSTEMS=y
CONFIG_9P_FS=y
CONFIG_9P_FS_POSIX_ACL=y
CONFIG_FUSE_FS=y
CONFIG_VIRTIO_FS=y
CONFIG_MISC_FILESYSTEMS=y
CONFIG_EROFS_FS=y
CONFIG_PROC_FS=y
CONFIG_PROC_SYSCTL=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_TMPFS=y
CONFIG_TMPFS_POSIX_ACL=y
CONFIG_TMPFS_XATTR=y
CONFIG_INOTIFY_USER=y
CONFIG_FHANDLE=y
CONFIG_OVERLAY_FS=y
CONFIG_NAMESPACES=y
CONFIG_UTS_NS=y
CONFIG_IPC_NS=y
CONFIG_PID_NS=y
CONFIG_NET_NS=y
CONFIG_USER_NS=y
CONFIG_CGROUPS=y
CONFIG_MEMCG=y
CONFIG_CGROUP_PIDS=y
CONFIG_CGROUP_FREEZER=y
CONFIG_CPUSETS=y
CONFIG_CGROUP_CPUACCT=y
CONFIG_CGROUP_BPF=y
CONFIG_CGROUP_SCHED=y
CONFIG_FAIR_GROUP_SCHED=y
CONFIG_CFS_BANDWIDTH=y
CONFIG_SECCOMP=y
CONFIG_SECCOMP_FILTER=y
CONFIG_MODULES=n
'
key=$( (sha256sum "$tarball" | cut -c1-16; echo "$fragment") | sha256sum | cut -c1-16)
out=$cache/vmlinux-skiff-$key
if [ -s "$out" ]; then echo "$out"; exit 0; fi

# The unpacked tree is kept (keyed by the tarball) so that a changed fragment
# rebuilds incrementally; SKIFF_VM_KERNEL_KEEP_SRC=0 removes it afterwards.
work=${SKIFF_VM_KERNEL_SRC:-/var/tmp/skiff-vm-kernel-src}/$(sha256sum "$tarball" | cut -c1-16)
if [ ! -f "$work/.unpacked" ]; then
  rm -rf "$work"; mkdir -p "$work"
  echo "vm-kernel: unpacking $tarball" >&2
  tar -C "$work" -xf "$tarball"
  touch "$work/.unpacked"
fi
[ "${SKIFF_VM_KERNEL_KEEP_SRC:-1}" = 1 ] || trap 'rm -rf "$work"' EXIT
src=$(ls -d "$work"/linux-source-*)
cd "$src"
make -s ARCH=x86_64 tinyconfig >&2
printf '%s\n' "$fragment" >> .config
make -s ARCH=x86_64 olddefconfig >&2
# olddefconfig silently drops options whose dependencies are missing: check.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=y) grep -qx "$line" .config || { echo "vm-kernel: $line did not stick" >&2; missing=1; } ;; esac
done <<< "$fragment"
[ "$missing" = 0 ] || { echo "vm-kernel: config incomplete, see above" >&2; exit 1; }
echo "vm-kernel: building ($(nproc) jobs)" >&2
nice -n 10 make -s ARCH=x86_64 -j"$(nproc)" vmlinux >&2
cp vmlinux "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
