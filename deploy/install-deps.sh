#!/bin/sh
# Installs the Debian 12 packages shoal needs to build, test and run.
# Idempotent: asks apt only for what is missing and prints nothing when all is
# present. Used by the Makefile, the Dockerfile and .ci/run.
#
#   deploy/install-deps.sh            build + test dependencies (default)
#   deploy/install-deps.sh docker-build   only what compiling shoald needs (the
#                                     Dockerfile's build stage: no test tools)
#   deploy/install-deps.sh runtime    the shared libraries shoald loads, and the
#                                     openssl command (certificates for TLS listeners)
set -eu

build_pkgs="
  make cmake g++ pkg-config ccache
  libboost1.81-dev libboost-program-options1.81-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  prometheus-cpp-dev libsystemd-dev libssl-dev zlib1g-dev openssl libhiredis-dev
  libgtest-dev
  clang libclang-rt-14-dev
  python3 python3-websockets python3-yaml prometheus
  procps systemd haproxy redis-server
  chromium
"
# Compilers, cmake and the -dev libraries, nothing else: no clang, no test
# tools. Every one of them is in build_pkgs too.
docker_build_pkgs="
  make cmake g++ pkg-config ccache
  libboost1.81-dev libboost-program-options1.81-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  prometheus-cpp-dev libsystemd-dev libssl-dev zlib1g-dev libhiredis-dev
"
runtime_pkgs="
  libboost-program-options1.81.0 libyaml-cpp0.7 libspdlog1.10 libfmt9
  libprometheus-cpp-core1.0 libsystemd0 libssl3 zlib1g libhiredis0.14 ca-certificates openssl
"

case "${1:-build}" in
  build) want=$build_pkgs ;;
  docker-build) want=$docker_build_pkgs ;;
  runtime) want=$runtime_pkgs ;;
  *) echo "usage: $0 [build|docker-build|runtime]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: missing packages:$missing (run as root)" >&2; exit 1
  fi
else
  SUDO=
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
