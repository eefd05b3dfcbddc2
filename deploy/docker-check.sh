#!/usr/bin/env bash
# Builds the Dockerfile for real with buildah (no Docker engine needed:
# chroot isolation, vfs storage) and checks the image: it runs as non-root,
# carries the HEALTHCHECK, serves TCP echo, and its health probe passes.
# The base images debian:bookworm and debian:bookworm-slim are made locally
# with debootstrap when the registry is not reachable.
#
#   deploy/docker-check.sh          # exit 0 when every check passes
set -euo pipefail
cd "$(dirname "$0")/.."
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done

base_cache=${SHOAL_BASE_CACHE:-/var/cache/shoal-docker-base}
if ! buildah inspect --type image debian:bookworm >/dev/null 2>&1; then
  if [ ! -x "$base_cache/rootfs/bin/bash" ]; then
    echo "== debootstrap bookworm base image (once)"
    mkdir -p "$base_cache"
    debootstrap --variant=minbase bookworm "$base_cache/rootfs.tmp" http://deb.debian.org/debian >"$base_cache/debootstrap.log" 2>&1
    mv "$base_cache/rootfs.tmp" "$base_cache/rootfs"
  fi
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$base_cache/rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  buildah commit -q "$ctr" docker.io/library/debian:bookworm >/dev/null
  buildah tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
  buildah rm "$ctr" >/dev/null
fi

echo "== buildah bud (Dockerfile)"
start=$(date +%s)
buildah bud --layers --format docker --pull-never -q -t localhost/shoal:check . >/tmp/shoal-docker-build.log 2>&1 \
  || { tail -40 /tmp/shoal-docker-build.log; exit 1; }
echo "   built in $(( $(date +%s) - start )) s"

fail() { echo "FAIL: $*"; exit 1; }
user=$(buildah inspect --type image --format '{{.Docker.Config.User}}' localhost/shoal:check)
[ "$user" = shoal ] || fail "image user is '$user', expected shoal"
health=$(buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' localhost/shoal:check)
case "$health" in *--probe*) ;; *) fail "no HEALTHCHECK with --probe: $health" ;; esac
stop=$(buildah inspect --type image --format '{{.Docker.Config.StopSignal}}' localhost/shoal:check)
[ "$stop" = SIGTERM ] || fail "STOPSIGNAL is '$stop'"
echo "   user=$user stopsignal=$stop healthcheck=$health"

ctr=$(buildah from localhost/shoal:check)
trap 'kill "$run_pid" 2>/dev/null || true; wait 2>/dev/null || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
# chroot isolation shares the host's network: ports of our own, below the
# ephemeral range and not listened on now.
pick_port() {
  local p
  for _ in $(seq 100); do
    p=$(shuf -i 20000-31999 -n 1)
    ss -Htan "( sport = :$p )" | grep -q . || { echo "$p"; return; }
  done
  fail "no free port"
}
echo_port=$(pick_port) admin_port=$(pick_port)
cfg=$(mktemp)
cat >"$cfg" <<YAML
listeners:
  - {name: echo, protocol: tcp-echo, address: 127.0.0.1, port: $echo_port}
admin: {address: 127.0.0.1, port: $admin_port}
YAML
mnt=$(buildah mount "$ctr"); cp "$cfg" "$mnt/etc/shoal/shoal.yaml"; chmod 644 "$mnt/etc/shoal/shoal.yaml"; buildah umount "$ctr" >/dev/null
buildah run --user shoal "$ctr" -- /usr/bin/shoald --config /etc/shoal/shoal.yaml >/tmp/shoal-docker-run.log 2>&1 &
run_pid=$!
for _ in $(seq 50); do grep -q "ready:" /tmp/shoal-docker-run.log && break; sleep 0.2; done
grep -q "ready:" /tmp/shoal-docker-run.log || { cat /tmp/shoal-docker-run.log; fail "shoald did not start in the image"; }
reply=$(exec 3<>/dev/tcp/127.0.0.1/$echo_port; printf 'ping\n' >&3; timeout 5 head -c 5 <&3)
[ "$reply" = "ping" ] || fail "TCP echo from the image answered '$reply'"
buildah run --user shoal "$ctr" -- /usr/bin/shoald --probe 127.0.0.1:$admin_port || fail "health probe failed"
echo "   echo ok, health probe ok"
echo "docker-check: ok"
