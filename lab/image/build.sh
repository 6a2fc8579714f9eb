#!/usr/bin/env bash
# Build the lab's base image (a plain Debian host with systemd and python3) without any
# container registry: debootstrap a root filesystem, then `docker import` it.
#
# The image is tagged with a hash of this recipe, so an unchanged recipe is never rebuilt and a
# changed one never reuses a stale image. Prints the image reference on stdout (last line).
#
# Usage: build.sh [bookworm|trixie]
# Env:   KEEL_LAB_MIRROR   Debian archive URI (default: the machine's own apt sources)
#        KEEL_LAB_APT_PROXY HTTP proxy for the bootstrap (default: the local package cache if it answers)
set -euo pipefail

release="${1:-bookworm}"
case "$release" in
  bookworm|trixie) ;;
  *) echo "build.sh: unsupported release '$release' (bookworm or trixie)" >&2; exit 2 ;;
esac

# What a lab host has before Keel touches it: a minimal Debian with systemd as PID 1 and what
# Ansible needs to manage it. Everything else is installed by the roles, as on a real server.
# openssh-server: a fresh server is first reached as root over SSH with a key (the SSH lab).
packages="systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,ca-certificates,procps,iputils-ping,openssh-server"

recipe_hash=$( { cat "$0"; echo "$release $packages"; } | sha256sum | cut -c1-12)
image="keel-lab/debian:${release}-${recipe_hash}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

mirror="${KEEL_LAB_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 sources first (Debian 12+), then the one-line format.
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "build.sh: no Debian mirror found in apt sources; set KEEL_LAB_MIRROR" >&2; exit 1; }

proxy="${KEEL_LAB_APT_PROXY-}"
if [ -z "${KEEL_LAB_APT_PROXY+set}" ] && curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:3142/acng-report.html; then
  proxy="http://127.0.0.1:3142"
fi

rootfs=$(mktemp -d /var/tmp/keel-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "build.sh: bootstrapping $release from $mirror${proxy:+ via $proxy} into $image" >&2
log="$rootfs.log"
if ! http_proxy="$proxy" debootstrap --variant=minbase --include="$packages" \
     "$release" "$rootfs" "$mirror" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "build.sh: debootstrap failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"

# A container gets its machine-id from systemd at boot; a baked-in one would be shared by every host.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# Units that only make sense on hardware or fight with the container runtime.
for unit in systemd-remount-fs.service getty@tty1.service console-getty.service \
            systemd-firstboot.service systemd-udevd.service systemd-modules-load.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Host keys made by the package install would be shared by every host of the image: remove
# them and let each host make its own at first boot, before sshd starts (as cloud images do).
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat > "$rootfs/etc/systemd/system/lab-ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Generate this lab host's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/lab-ssh-host-keys.service "$rootfs/etc/systemd/system/multi-user.target.wants/lab-ssh-host-keys.service"
# Keep the image small and apt quiet about missing caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# apt's cache_valid_time looks at this directory's age: make the emptied index look stale,
# as on a fresh install, so the first converge updates it.
touch -d @0 "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >&2
echo "$image"
