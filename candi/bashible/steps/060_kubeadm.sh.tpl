# kubeadm: {{ if .Init }}init (the first control-plane node){{ else if eq .Role "master" }}join as another control-plane node{{ else }}join as a worker{{ end }}.
# The configuration holds the bootstrap token: root-only.
install -d -m 0700 /etc/kubernetes/dhctl
write_file /etc/kubernetes/dhctl/kubeadm.yaml 0600 <<'DHCTL_EOF'
{{ .KubeadmConfig -}}
DHCTL_EOF
command -v kubeadm >/dev/null 2>&1 || die "kubeadm is not installed (the packages step installs it)"
{{ if .Init }}
admin=/etc/kubernetes/admin.conf
ready() { kubectl --kubeconfig "$admin" get --raw /readyz; }
if [[ -f "$admin" ]]; then
	log "the control plane was initialised before: waiting for it to be ready"
	wait_for 300 "the API server to answer /readyz (kubeadm init ran before; if it stays down, run 'kubeadm reset -f' on this node and re-run dhctl)" ready
else
	if [[ -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" || -d /var/lib/etcd/member ]]; then
		log "an unfinished kubeadm init left files behind: kubeadm reset -f"
		kubeadm reset -f
	fi
	started=$SECONDS
	kubeadm init --config /etc/kubernetes/dhctl/kubeadm.yaml{{ if .UploadCerts }} --upload-certs{{ end }}
	wait_for 300 "the API server to answer /readyz after kubeadm init" ready
	log "kubeadm init took $((SECONDS - started))s"
fi
log "control plane ready: $(kubectl --kubeconfig "$admin" get --raw /readyz)"
{{ else }}
if [[ -f /etc/kubernetes/kubelet.conf ]]; then
	log "this node joined before"
else
	if [[ -f /etc/kubernetes/bootstrap-kubelet.conf || -f /var/lib/kubelet/config.yaml ]]; then
		log "an unfinished kubeadm join left files behind: kubeadm reset -f"
		kubeadm reset -f
	fi
	started=$SECONDS
	kubeadm join --config /etc/kubernetes/dhctl/kubeadm.yaml
	log "kubeadm join took $((SECONDS - started))s"
fi
wait_for 120 "kubelet to be active after kubeadm join" systemctl is-active --quiet kubelet
log "kubelet is active"
{{- if eq .Role "master" }}
local_ready() { kubectl --kubeconfig /etc/kubernetes/admin.conf --server "https://{{ hostport .NodeIP 6443 }}" get --raw /readyz; }
wait_for 300 "this node's API server to answer /readyz after kubeadm join" local_ready
log "this node's API server is ready"
{{- end }}
{{ end -}}
