# kubeadm: {{ if .Init }}init (the first control-plane node){{ else if eq .Role "master" }}join as another control-plane node{{ else }}join as a worker{{ end }}.
# The configuration holds the bootstrap token: root-only.
install -d -m 0700 /etc/kubernetes/dhctl
write_file /etc/kubernetes/dhctl/kubeadm.yaml 0600 <<'DHCTL_EOF'
{{ .KubeadmConfig -}}
DHCTL_EOF
{{- with .DiscoveryKubeconfig }}
# How this node finds and trusts the cluster: the API server and the cluster CA (no credentials).
write_file {{ discoveryKubeconfigPath }} 0600 <<'DHCTL_EOF'
{{ . -}}
DHCTL_EOF
{{- end }}
command -v kubeadm >/dev/null 2>&1 || die "kubeadm is not installed (the packages step installs it)"
{{ if .Init }}
admin=/etc/kubernetes/admin.conf
ready() { kubectl --kubeconfig "$admin" get --raw /readyz; }
# Written once kubeadm init finished every phase: a run killed after admin.conf was written but
# before the last phases (upload-config, bootstrap-token, the kube-proxy add-on) is finished
# on the next run instead of being taken for a complete one.
done_marker=/etc/kubernetes/dhctl/init-complete
# Everything kubeadm init writes before it waits for the control plane: a run killed before all
# of it was written left a control plane that never starts (init again, below), not a slow one.
control_plane_written() {
	[[ -f "$admin" && -f /var/lib/kubelet/config.yaml ]] || return 1
	local m
	for m in etcd kube-apiserver kube-controller-manager kube-scheduler; do
		[[ -f /etc/kubernetes/manifests/$m.yaml ]] || return 1
	done
}
if [[ -f "$done_marker" ]] || control_plane_written; then
	log "the control plane was initialised before: waiting for it to be ready"
	wait_for 300 "the API server to answer /readyz (kubeadm init ran before; if it stays down, run 'kubeadm reset -f' on this node and re-run dhctl)" ready
	if [[ ! -f "$done_marker" ]]; then
		log "kubeadm init was interrupted after the control plane started: running its remaining phases"
		cfg=/etc/kubernetes/dhctl/kubeadm.yaml
		kubeadm init phase upload-config all --config "$cfg"
		{{- if .UploadCerts }}
		# Only when missing: each upload makes one more bootstrap token owning the Secret.
		kubectl --kubeconfig "$admin" -n kube-system get secret kubeadm-certs >/dev/null 2>&1 ||
			kubeadm init phase upload-certs --upload-certs --skip-certificate-key-print --config "$cfg"
		{{- end }}
		kubeadm init phase mark-control-plane --config "$cfg"
		kubeadm init phase bootstrap-token --skip-token-print --config "$cfg"
		kubeadm init phase kubelet-finalize all --config "$cfg"
		# kube-proxy only: CoreDNS is dhctl's (install/dns), and kubeadm's is disabled.
		kubeadm init phase addon kube-proxy --config "$cfg"
	fi
else
	if [[ -f "$admin" || -n "$(ls -A /etc/kubernetes/manifests 2>/dev/null)" || -d /var/lib/etcd/member ]]; then
		log "an unfinished kubeadm init left files behind: kubeadm reset -f"
		kubeadm reset -f
	fi
	started=$SECONDS
	# kubeadm prints neither the bootstrap token nor the certificate key: its output stays in this
	# step's log on the node, and dhctl has both already.
	kubeadm init --config /etc/kubernetes/dhctl/kubeadm.yaml --skip-token-print{{ if .UploadCerts }} --upload-certs --skip-certificate-key-print{{ end }} ||
		{ kubelet_diagnosis; die "kubeadm init failed (its output and the kubelet's journal are above)"; }
	wait_for 300 "the API server to answer /readyz after kubeadm init" ready
	log "kubeadm init took $((SECONDS - started))s"
fi
touch "$done_marker"
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
	kubeadm join --config /etc/kubernetes/dhctl/kubeadm.yaml ||
		{ kubelet_diagnosis; die "kubeadm join failed (its output and the kubelet's journal are above)"; }
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
