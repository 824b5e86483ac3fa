# Images: every image this node will run ({{ len .PrePullImages }}: the sandbox, kube-proxy, the CNI
# and CoreDNS{{ if eq .Role "master" }}, the control plane, etcd and the platform controller{{ end }}) is pulled all at once
# and in the background, through the CRI (so with containerd's registry configuration and
# credentials), while the rest of the bundle runs. kubeadm and the kubelet then find them
# present instead of pulling them one after another when they first need them. The first
# master pulls at once; every other node once the API server answers (bounded: 10 minutes),
# so that until then the registry and the CPU serve the first master's pull and kubeadm init,
# which everything else waits for, and the other nodes still have their images before they
# join. A pull that fails here is only logged (below): kubeadm and the kubelet pull whatever
# is missing themselves, and report their failures.
command -v crictl >/dev/null 2>&1 || die "crictl is not installed (the packages step installs it)"
write_file /etc/crictl.yaml 0644 <<'DHCTL_EOF'
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
DHCTL_EOF
script=/var/lib/dhctl/image-prepull.sh
pull_log=/var/lib/dhctl/image-prepull.log
write_file "$script" 0755 <<'DHCTL_EOF'
#!/bin/bash
# Written by dhctl's node bundle (step 045_images): pulls the node's images in parallel.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
pull() {
	local image=$1 started=$SECONDS out
	if crictl inspecti -q "$image" >/dev/null 2>&1; then
		echo "$image: already present"
	elif out=$(timeout 600 crictl pull --pull-timeout 590s "$image" 2>&1); then
		echo "$image: pulled in $((SECONDS - started))s"
	else
		echo "$image: NOT pulled (kubeadm or the kubelet will pull it): $out"
	fi
}
{{- if not .Init }}
# Until the first master's API server answers (a fresh connection each try).
for ((i = 0; i < 600; i++)); do
	timeout 2 bash -c 'exec 3<>/dev/tcp/{{ .ControlPlaneHost }}/{{ .ControlPlanePort }}' 2>/dev/null && break
	sleep 1
done
echo "the API server at {{ .ControlPlaneEndpoint }} answers (or 10 minutes passed): pulling"
{{- end }}
for image in "$@"; do
	pull "$image" &
done
wait
echo "done"
DHCTL_EOF
# Detached from this step: its own session (no SIGHUP when the SSH session ends), no descriptor of
# the bundle's (fd 9 is the bundle lock, which the kubeadm step's run takes next).
setsid -f "$script"{{ range .PrePullImages }} {{ quote . }}{{ end }} </dev/null >"$pull_log" 2>&1 9>&-
log "pulling {{ len .PrePullImages }} images in the background (their log: $pull_log)"
