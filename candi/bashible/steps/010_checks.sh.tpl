# Checks: the host can become a node. Nothing is changed.
os_check

arch=$(uname -m)
[[ "$arch" == x86_64 ]] || die "unsupported architecture $arch: the version map's packages are for x86_64 (amd64)"

if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
	log "cgroups: v2 (unified)"
elif [[ -d /sys/fs/cgroup/memory && -d /sys/fs/cgroup/cpu ]]; then
	log "cgroups: v1 (the memory and cpu controllers are mounted)"
else
	die "no usable cgroup filesystem under /sys/fs/cgroup (neither cgroup v2 nor the v1 memory and cpu controllers)"
fi

if [[ -n "$(swapon --noheadings 2>/dev/null || true)" ]]; then
	log "swap is on: the base settings step turns it off"
fi

missing=()
required_tools=({{ range .RequiredTools }}{{ . }} {{ end }})
for tool in "${required_tools[@]}"; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	die "missing host tools: ${missing[*]}; install them with: $(os_install_hint {{ range .RequiredToolPackages }}{{ . }} {{ end }})"
fi
optional_tools=({{ range .OptionalTools }}{{ . }} {{ end }})
for tool in "${optional_tools[@]}"; do
	command -v "$tool" >/dev/null 2>&1 || log "WARNING: $tool is missing; kubeadm's preflight warns about it"
done

# Ports: only before the node joined (afterwards its own components hold them).
if [[ ! -f /etc/kubernetes/kubelet.conf ]]; then
	ports=({{ range .Ports }}{{ . }} {{ end }})
	for port in "${ports[@]}"; do
		if ss -Hltn "sport = :$port" | grep -q .; then
			die "TCP port $port is already in use: $(ss -Hltnp "sport = :$port" | head -n1); a node needs it free"
		fi
	done
fi

if command -v timedatectl >/dev/null 2>&1; then
	synced=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || true)
	if [[ "$synced" != yes ]]; then
		log "WARNING: the clock is not NTP-synchronised (timedatectl says '${synced:-unknown}'); certificates and tokens need the right time"
	fi
fi
log "checks passed: $(. /etc/os-release && echo "$PRETTY_NAME"), $arch, kernel $(uname -r)"
