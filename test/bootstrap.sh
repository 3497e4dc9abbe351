#!/usr/bin/env bash
# Installs what Weft's build, tests, demo and benchmark need on a fresh Debian machine and reuses
# what is already there: Debian packages (compiler for eBPF, CNI plugins, iproute2, iptables,
# tcpdump; haproxy, stunnel4 and nginx, the benchmark's peers, which it runs itself in the harness
# nodes: their system services are kept from starting),
# then the control-plane binaries, CoreDNS and fortio built from Go modules (package
# test/controlplane). One progress line per step with elapsed time.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$EPOCHREALTIME
step() { awk -v a="$start" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[%6.1fs] %s\n", b - a, m }'; }

packages=(clang llvm libbpf-dev iproute2 iptables containernetworking-plugins tcpdump protobuf-compiler
  haproxy stunnel4 nginx)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Keep the packages' services (nginx on :80, haproxy) from starting: weft-bench runs its own.
  norc=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && norc=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  [ -z "$norc" ] || rm -f /usr/sbin/policy-rc.d
  [ "$status" = 0 ] || exit "$status"
fi
step "Debian packages present: ${packages[*]}"

command -v go >/dev/null || { echo "Go is required (go.mod names the version)" >&2; exit 1; }
go run ./test/controlplane/cmd/weft-tools -cache "${WEFT_TOOLS_CACHE:-.cache/tools}" | sed "s/^/           /"
step "tools ready"
