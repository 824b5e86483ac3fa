#!/bin/bash
# Step {{ .Step }} of the dhctl node bundle ({{ .OSFamily }}, {{ .Role }}). Rendered by dhctl; do not edit.
set -Eeuo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

log() { echo "[$(date +%H:%M:%S)] $*"; }
die() {
	echo "ERROR: $*" >&2
	exit 1
}

# kubelet_diagnosis prints what the kubelet said about itself when kubeadm failed
# (kubeadm only says the kubelet did not become healthy).
kubelet_diagnosis() {
	echo "--- the kubelet's state and its last journal lines:" >&2
	systemctl show kubelet -p ActiveState -p SubState -p NRestarts -p ExecMainStatus --no-pager 2>&1 | paste -sd' ' >&2 || true
	journalctl -u kubelet -n 25 --no-pager -o cat 2>&1 | cut -c1-400 >&2 || true
	echo "--- containers (crictl ps -a) and the background image pulls:" >&2
	crictl ps -a 2>&1 | head -n 20 >&2 || true
	tail -n 20 /var/lib/dhctl/image-prepull.log >&2 2>/dev/null || true
}

# wait_for SECONDS WHAT COMMAND...: bounded wait until COMMAND succeeds.
wait_for() {
	local timeout=$1 what=$2
	shift 2
	local end=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= end)); then
			die "timed out after ${timeout}s waiting for $what"
		fi
		sleep 1
	done
}

# write_file PATH MODE: stdin into PATH (atomically, with MODE) when the content differs.
# Sets CHANGED=1 when it wrote.
export CHANGED=0
write_file() {
	local path=$1 mode=$2 tmp
	mkdir -p "$(dirname "$path")"
	tmp=$(mktemp "$path.XXXXXX")
	chmod "$mode" "$tmp"
	cat >"$tmp"
	if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
		rm -f "$tmp"
		chmod "$mode" "$path"
		return 0
	fi
	mv -f "$tmp" "$path"
	CHANGED=1
	log "wrote $path"
}

# fetch PATH OUT: GET dhctl's packages endpoint (reached through an SSH tunnel) into OUT. Uses
# curl when the host has it, else bash's /dev/tcp (minimal images have neither curl nor wget).
fetch() {
	local path=$1 out=$2
	[[ -n "${DHCTL_PACKAGES_URL:-}" ]] || die "DHCTL_PACKAGES_URL is not set: run the bundle through dhctl, which serves packages to the node"
	local code
	if command -v curl >/dev/null 2>&1; then
		code=$(curl -sS --max-time 900 -o "$out" -w '%{http_code}' "$DHCTL_PACKAGES_URL$path") || code=000
	else
		local hostport=${DHCTL_PACKAGES_URL#http://}
		hostport=${hostport%%/*}
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || die "cannot connect to the packages endpoint $DHCTL_PACKAGES_URL"
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
		local status line
		IFS= read -r status <&3 || status=
		while IFS= read -r line <&3; do
			line=${line%$'\r'}
			[[ -z "$line" ]] && break
		done
		cat <&3 >"$out"
		exec 3<&-
		code=$(echo "$status" | cut -d' ' -f2)
	fi
	if [[ "$code" != 200 ]]; then
		local msg=""
		[[ -f "$out" ]] && msg=$(head -c 400 "$out" | tr -d '\000')
		rm -f "$out"
		echo "packages endpoint answered HTTP $code for $path: $msg" >&2
		return 1
	fi
}
