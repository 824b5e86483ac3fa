# kubelet: the systemd unit and kubeadm's drop-in. kubeadm writes the kubelet's configuration
# (/var/lib/kubelet/config.yaml) and starts it during init or join.
kubelet_bin=$(command -v kubelet) || die "kubelet is not installed (the packages step installs it)"
write_file /etc/systemd/system/kubelet.service 0644 <<DHCTL_EOF
[Unit]
Description=kubelet: the Kubernetes node agent (installed by dhctl)
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStart=$kubelet_bin
Restart=always
StartLimitInterval=0
RestartSec=5

[Install]
WantedBy=multi-user.target
DHCTL_EOF
write_file /etc/systemd/system/kubelet.service.d/10-kubeadm.conf 0644 <<DHCTL_EOF
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=$kubelet_bin \$KUBELET_KUBECONFIG_ARGS \$KUBELET_CONFIG_ARGS \$KUBELET_KUBEADM_ARGS \$KUBELET_EXTRA_ARGS
DHCTL_EOF
{{ template "proxy" dict "Unit" "kubelet" "Proxy" .Proxy }}
# One reload of systemd for the unit files and the enablement: `systemctl enable` alone reloads
# too, even for an enabled unit (half a second of a busy node each).
systemctl enable --no-reload kubelet >/dev/null 2>&1
systemctl daemon-reload
if [[ -f /var/lib/kubelet/config.yaml ]] && ((CHANGED)); then
	systemctl restart kubelet
fi
log "kubelet $("$kubelet_bin" --version | awk '{print $2}') unit installed"
