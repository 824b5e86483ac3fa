# containerd: registry hosts with CA and credentials, the sandbox image, the cgroup driver of the
# host, and restrict_oom_score_adj where the host withholds CAP_SYS_RESOURCE.
containerd_bin=$(command -v containerd) || die "containerd is not installed (the packages step installs it)"
version=$("$containerd_bin" --version | awk '{print $3}')
version=${version#v}
case "$version" in
1.*) ;;
*) die "containerd $version: this bundle writes a containerd 1.x configuration (version 2); the version map must give containerd 1.6 or 1.7" ;;
esac

# runc cannot write oom_score_adj without CAP_SYS_RESOURCE (bit 24 of CapEff), e.g. in some
# containers and restricted VMs; containerd then must not ask for it.
capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
if (((16#$capeff >> 24) & 1)); then
	restrict_oom=false
else
	restrict_oom=true
	log "CAP_SYS_RESOURCE is missing: setting restrict_oom_score_adj"
fi

{{ if eq .CgroupDriver "systemd" -}}
[[ "$(cat /proc/1/comm)" == systemd ]] || die "the systemd cgroup driver was chosen but PID 1 is $(cat /proc/1/comm)"
{{- end }}

{{ with .Registry -}}
{{ if .CA -}}
write_file /etc/containerd/certs.d/{{ .Host }}/ca.crt 0644 <<'DHCTL_EOF'
{{ .CA }}
DHCTL_EOF
{{ end -}}
write_file /etc/containerd/certs.d/{{ .Host }}/hosts.toml 0644 <<'DHCTL_EOF'
server = "{{ .Scheme }}://{{ .Host }}"

[host."{{ .Scheme }}://{{ .Host }}"]
  capabilities = ["pull", "resolve"]
{{- if .CA }}
  ca = "/etc/containerd/certs.d/{{ .Host }}/ca.crt"
{{- end }}
DHCTL_EOF
{{- end }}

sed "s/@RESTRICT_OOM_SCORE_ADJ@/$restrict_oom/" <<'DHCTL_EOF' | write_file /etc/containerd/config.toml 0600
# Written by dhctl.
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {{ toml .SandboxImage }}
  restrict_oom_score_adj = @RESTRICT_OOM_SCORE_ADJ@
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = {{ eq .CgroupDriver "systemd" }}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
{{- with .Registry }}{{ if .User }}
  [plugins."io.containerd.grpc.v1.cri".registry.configs.{{ toml .Host }}.auth]
    username = {{ toml .User }}
    password = {{ toml .Password }}
{{- end }}{{ end }}
DHCTL_EOF

if [[ ! -f /lib/systemd/system/containerd.service && ! -f /usr/lib/systemd/system/containerd.service ]]; then
	write_file /etc/systemd/system/containerd.service 0644 <<DHCTL_EOF
[Unit]
Description=containerd container runtime (installed by dhctl)
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$containerd_bin
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
DHCTL_EOF
fi
{{ template "proxy" dict "Unit" "containerd" "Proxy" .Proxy }}
mkdir -p /opt/cni/bin /etc/cni/net.d
# One reload of systemd for the unit files and the enablement: `systemctl enable` alone reloads
# too, even for an enabled unit (half a second of a busy node each).
systemctl enable --no-reload containerd >/dev/null 2>&1
systemctl daemon-reload
systemctl restart containerd
wait_for 60 "containerd to answer on /run/containerd/containerd.sock" ctr version
log "containerd $version running (SystemdCgroup={{ eq .CgroupDriver "systemd" }}, restrict_oom_score_adj=$restrict_oom)"
