#!/usr/bin/env bash
# Build the demo app's images on this machine from the lab base image and save them in one
# archive that a lab host loads and pushes to the lab registry (nothing comes from a public
# registry). Versions: 1.0.0, 1.1.0, 1.2.0-broken (readiness always fails) and
# 1.3.0-unready-behind-proxy (readiness fails for requests through a proxy, passes when asked directly).
#   demo/build.sh RELEASE OUT.tar [PROXY]
set -euo pipefail
release=${1:?release (bookworm or trixie)}
out=${2:?output archive}
proxy=${3:-http://127.0.0.1:3142}
here=$(cd "$(dirname "$0")" && pwd)
lab_base=$(bash "$here/../lab/image/build.sh" "$release" | tail -n 1)
# The lab image's root directory is mode 0700 (debootstrap's target directory): on the vfs
# driver of an app host that is itself a container, no non-root user could reach /usr/bin.
# Exported from a container and imported again, the root directory is 0755. Done once per lab
# image (tagged with its name).
base="keel-demo-base:${lab_base##*:}"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  cid=$(docker create "$lab_base" /bin/true)
  docker export "$cid" | docker import - "$base" >/dev/null
  docker rm "$cid" >/dev/null
fi
tags=()
for spec in 1.0.0:0 1.1.0:0 1.2.0-broken:1 1.3.0-unready-behind-proxy:behind-proxy; do
  version=${spec%%:*} broken=${spec##*:}
  docker build -q --network host --build-arg BASE="$base" --build-arg VERSION="$version" \
    --build-arg BROKEN="$broken" --build-arg http_proxy="$proxy" -t "keel-demo:$version" "$here" >&2
  tags+=("keel-demo:$version")
done
docker save -o "$out" "${tags[@]}"
echo "$out"
