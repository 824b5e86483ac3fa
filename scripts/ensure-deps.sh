#!/usr/bin/env bash
# Installs the Debian packages dhctl's tests and local rig need, once: a second run only checks.
# Integration tests drive real OpenSSH, network namespaces, sudo, systemd-nspawn machines and a
# registry, so these are test prerequisites, not product dependencies.
set -euo pipefail

packages=(
  openssh-server openssh-client sudo iproute2 iptables  # SSH transport tests (sshd in namespaces)
  nftables                                               # the rig's egress counters (air-gap proof)
  debootstrap systemd-container                          # rig machines
  docker-registry skopeo                                 # rig registry
  shellcheck                                             # rendered node scripts
  jq curl ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "ensure-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The system sshd must not start on install: tests run their own sshd processes.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
