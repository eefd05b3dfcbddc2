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

# The Debian mirror this machine's apt already uses (no host is written in
# the repo): the URIs of a deb822 stanza whose Suites hold bookworm, or the
# URL of a one-line `deb URL bookworm ...` entry. SHOAL_DEBIAN_MIRROR wins.
debian_mirror() {
  if [ -n "${SHOAL_DEBIAN_MIRROR:-}" ]; then echo "$SHOAL_DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; the first http(s) URI of an
    # enabled `deb` stanza for the bookworm suite itself (not -security or
    # -updates, which live at other paths or carry no full archive).
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && enabled != "no" && uri != "") { print uri; found = 1; exit }
        types = suites = uri = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"   { $1 = ""; types = $0 " " }
      tolower($1) == "suites:"  { $1 = ""; suites = $0 " " }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      tolower($1) == "uris:"    { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { uri = $i; break } }
      END { if (!found) flush() }
    ' "$f" | head -1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URL bookworm component...
    sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:[^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' "$f"
  done
}

# The enabled deb822 stanzas of this machine for bookworm, bookworm-updates
# and bookworm-security, as they are.
bookworm_stanzas() {
  [ -z "${SHOAL_DEBIAN_MIRROR:-}" ] || return 0
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm(-updates|-security)?( |$)/ && enabled != "no") printf "%s\n", text
        types = suites = enabled = text = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { text = text $0 "\n" }
      tolower($1) == "types:"   { $1 = ""; types = $0 " " }
      tolower($1) == "suites:"  { $1 = ""; suites = $0 " " }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { flush() }
    ' "$f"
  done
}

base_cache=${SHOAL_BASE_CACHE:-/var/cache/shoal-docker-base}
if ! buildah inspect --type image debian:bookworm >/dev/null 2>&1 \
   || ! buildah inspect --type image debian:bookworm-slim >/dev/null 2>&1; then
  if [ ! -x "$base_cache/rootfs/bin/bash" ]; then
    mirror=$(debian_mirror | head -1)
    if [ -z "$mirror" ]; then
      echo "docker-check: no Debian bookworm source in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources" >&2
      echo "  (a 'URIs:' line in a stanza with 'Suites: bookworm', or 'deb URL bookworm main');" >&2
      echo "  set SHOAL_DEBIAN_MIRROR=URL to name the mirror to debootstrap the base image from" >&2
      exit 1
    fi
    echo "== debootstrap bookworm base image from $mirror (once)"
    mkdir -p "$base_cache"
    rm -rf "$base_cache/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$base_cache/rootfs.tmp" "$mirror" >"$base_cache/debootstrap.log" 2>&1 \
      || { tail -20 "$base_cache/debootstrap.log"; echo "docker-check: debootstrap from $mirror failed" >&2; exit 1; }
    # debootstrap writes only bookworm main; like the registry's image, take
    # -updates and -security too, from the stanzas this machine uses.
    bookworm_stanzas >"$base_cache/rootfs.tmp/etc/apt/sources.list.d/debian.sources"
    if [ -s "$base_cache/rootfs.tmp/etc/apt/sources.list.d/debian.sources" ]; then
      rm -f "$base_cache/rootfs.tmp/etc/apt/sources.list"
    else
      rm -f "$base_cache/rootfs.tmp/etc/apt/sources.list.d/debian.sources"
    fi
    # No downloaded .debs or package lists in the image (apt-get update
    # fetches fresh lists in the Dockerfile).
    rm -rf "$base_cache"/rootfs.tmp/var/cache/apt/archives/*.deb "$base_cache"/rootfs.tmp/var/lib/apt/lists/*
    mv "$base_cache/rootfs.tmp" "$base_cache/rootfs"
  fi
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$base_cache/rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  # Short names: FROM debian:bookworm finds them with --pull-never.
  buildah commit -q "$ctr" debian:bookworm >/dev/null
  # -slim as the registry's: no documentation, manual pages or locales,
  # now or from packages installed later (dpkg path-exclude).
  mnt=$(buildah mount "$ctr")
  cat >"$mnt/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
  find "$mnt/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$mnt"/usr/share/man/* "$mnt"/usr/share/info/* "$mnt"/usr/share/locale/* "$mnt"/usr/share/lintian/*
  buildah umount "$ctr" >/dev/null
  buildah commit -q "$ctr" debian:bookworm-slim >/dev/null
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
