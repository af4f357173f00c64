#!/usr/bin/env bash
# Builds (or reuses) the guest image of the VM node (hack/vm-node.sh): Debian bookworm with systemd
# as PID 1, cgroup v2 only, containerd and runc, the CNI plugins and iptables, made by mmdebstrap
# and laid on an ext4 disk with `mkfs.ext4 -d`. Prints the directory that holds it:
#
#   disk.img      the root filesystem (/dev/vda in the guest), sparse
#   vmlinuz       the guest's kernel and initrd, taken from the rootfs (qemu -kernel/-initrd)
#   initrd.img
#
# Cached under ${PNC_CACHE_DIR:-~/.cache/pod-network-controller}/vm/<hash>, keyed by the suite,
# the package list and the hooks that set the guest up: a change to any of them builds a new image. Nothing in the
# image is specific to a cluster; each boot gets its node's settings from a second disk.
set -euo pipefail

CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
# What a node of the common shape runs; the rest is how we reach and configure it.
PACKAGES=(
  systemd systemd-sysv dbus udev kmod linux-image-amd64
  containerd runc containernetworking-plugins iptables iproute2
  # the pods' way to the apiserver's IPv6 address (the `kubernetes` Service is IPv4)
  socat
  # containerd unpacks image layers with unpigz when it finds it: gunzip on both vCPUs, which
  # under emulation is most of an import
  pigz
  procps util-linux
)
DISK_SIZE=4G

log() { echo "vm-image: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap in root mode; files owned by the guest's users)"
for tool in mmdebstrap mkfs.ext4 sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is missing: run hack/install-deps.sh"
done

# Before the kernel is installed: an initrd with only the virtio drivers the guest boots from
# (`most` would take longer to make and to unpack under software emulation).
# shellcheck disable=SC2016 # the hooks' $1 (the rootfs) is mmdebstrap's to expand
setup_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
echo MODULES=list >"$1/etc/initramfs-tools/conf.d/pnc-vm"
printf "%s\n" virtio_pci virtio_blk virtio_net ext4 >"$1/usr/share/initramfs-tools/modules.d/pnc-vm"'
# The guest's own setup: root on /dev/vda, a root shell on the serial console, and the unit
# that applies the node disk at boot (containerd waits for it).
# shellcheck disable=SC2016
customize_hook='set -e
echo pnc-vm >"$1/etc/hostname"
echo "/dev/vda / ext4 defaults,noatime 0 1" >"$1/etc/fstab"
mkdir -p "$1/etc/systemd/system/serial-getty@ttyS0.service.d"
printf "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200 %%I \$TERM\n" \
  >"$1/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
cat >"$1/etc/systemd/system/pnc-node.service" <<EOF
[Unit]
Description=The node settings from the second disk (hack/vm-node.sh)
After=local-fs.target systemd-udev-settle.service
Wants=systemd-udev-settle.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=/bin/mkdir -p /run/pnc
ExecStartPre=/bin/mount -o ro LABEL=pnc-node /run/pnc
ExecStart=/bin/bash /run/pnc/setup.sh
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF
chroot "$1" systemctl enable pnc-node.service
# containerd starts once the node disk has written its configuration.
chroot "$1" systemctl disable containerd.service
rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"
passwd -R "$1" -d root >/dev/null'

key=$( { echo "$SUITE" "$DISK_SIZE"; printf '%s\n' "${PACKAGES[@]}" "$setup_hook" "$customize_hook"; } | sha256sum | cut -c1-16)
OUT="$CACHE_ROOT/vm/$key"
if [[ -f "$OUT/complete" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$CACHE_ROOT/vm"
# One build at a time; a waiter finds the image built.
exec 9>"$OUT.lock"
flock 9
if [[ -f "$OUT/complete" ]]; then
  echo "$OUT"
  exit 0
fi
rm -rf "$OUT"
work=$(mktemp -d "$CACHE_ROOT/vm/build.XXXXXX")
# --one-file-system: a killed mmdebstrap may leave the host's /proc, /sys or /dev mounted inside.
trap 'rm -rf --one-file-system "$work"' EXIT
start=$SECONDS
log "building the guest image $key (Debian $SUITE, ${#PACKAGES[@]} packages; cold: several minutes)"

mmdebstrap --quiet --mode=root --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --setup-hook="$setup_hook" --customize-hook="$customize_hook" \
  "$SUITE" "$work/rootfs" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main" \
  >"$work/mmdebstrap.log" 2>&1 || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
log "rootfs in $((SECONDS - start)) s"

mkdir -p "$work/out"
cp "$work/rootfs/boot/vmlinuz-"* "$work/out/vmlinuz"
cp "$work/rootfs/boot/initrd.img-"* "$work/out/initrd.img"
truncate -s "$DISK_SIZE" "$work/out/disk.img"
mkfs.ext4 -q -F -L pnc-root -d "$work/rootfs" "$work/out/disk.img"
printf '%s\n' "${PACKAGES[@]}" >"$work/out/packages"
touch "$work/out/complete"
mv "$work/out" "$OUT"
log "built the guest image in $((SECONDS - start)) s: $OUT"
echo "$OUT"
