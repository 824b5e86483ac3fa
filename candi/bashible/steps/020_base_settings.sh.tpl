# Base settings: kernel modules (where loadable), sysctls, swap off.
write_file /etc/modules-load.d/dhctl.conf 0644 <<'DHCTL_EOF'
overlay
br_netfilter
DHCTL_EOF
if [[ -d "/lib/modules/$(uname -r)" ]]; then
	for m in overlay br_netfilter; do
		modprobe "$m" || die "cannot load the kernel module $m"
	done
else
	log "no /lib/modules/$(uname -r): kernel modules cannot be loaded here, overlay and br_netfilter must be built in"
fi

write_file /etc/sysctl.d/90-dhctl.conf 0644 <<'DHCTL_EOF'
{{ range .Sysctls }}{{ .Key }} = {{ .Value }}
{{ end }}DHCTL_EOF
{{ range .Sysctls }}
key={{ .Key }}
want={{ .Value }}
have=$(sysctl -n "$key" 2>/dev/null) || die "sysctl $key does not exist on this kernel (is br_netfilter built in or loaded?)"
if [[ "$have" != "$want" ]]; then
	sysctl -q -w "$key=$want" || die "cannot set sysctl $key to $want (it is $have)"
fi
{{ end }}
if [[ -n "$(swapon --noheadings 2>/dev/null || true)" ]]; then
	swapoff -a
	log "swap turned off"
fi
if grep -Eq '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab 2>/dev/null; then
	sed -i -E 's/^([^#].*[[:space:]]swap[[:space:]].*)$/# \1  # disabled by dhctl: kubelet needs swap off/' /etc/fstab
	log "swap entries in /etc/fstab commented out"
fi
