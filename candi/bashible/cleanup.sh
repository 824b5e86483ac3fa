#!/bin/bash
# Cleanup (dhctl bootstrap-phase abort): remove what the node bundle (and the cluster it started)
# left on this host, so the host can be bootstrapped again. Run as root. Safe to run twice: every
# action checks first. What it does is reported on stdout as "::did <what>" and "::failed <what>"
# lines (read by dhctl); command noise goes to stderr.
#
# Not reverted, on purpose: the kernel modules and sysctls the base settings step set (a new
# bootstrap needs the same ones) and swap entries it commented out in /etc/fstab.
set -uo pipefail
exec 3>&1 1>&2
did() { echo "::did $*" >&3; }
failures=0
failed() {
	echo "::failed $*" >&3
	failures=$((failures + 1))
}

state=/var/lib/dhctl
# Wait for a bundle run still going on this host (the driver holds this lock), bounded.
if [[ -d $state/bashible ]]; then
	exec 9>"$state/bashible/lock"
	if ! flock -w "${DHCTL_CLEANUP_LOCK_WAIT:-60}" 9; then
		failed "a node bundle run still holds $state/bashible/lock; wait for it to end, then re-run abort"
		exit 1
	fi
fi

# 0. The node bundle's background image pulls, if any still run (they would pull into the
# containerd being removed).
if pkill -f /var/lib/dhctl/image-prepull.sh 2>/dev/null; then
	did "stopped the background image pulls"
fi

# 1. kubeadm reset: stops kubelet, removes the pods' containers, static pod manifests,
# certificates, kubeconfigs and the local etcd data. Bounded: on a control-plane node of a broken
# cluster it may wait for an API server that never answers.
if command -v kubeadm >/dev/null 2>&1 && [[ -d /etc/kubernetes || -d /var/lib/kubelet || -d /var/lib/etcd ]]; then
	if timeout 120 kubeadm reset -f >/dev/null 2>&1; then
		did "kubeadm reset -f"
	else
		# What it did not remove, the steps below do.
		did "kubeadm reset -f (it failed; cleaning up by hand)"
	fi
fi

# 2. Services: kubelet, the pods' cgroups, containerd and its shims (containerd's unit keeps
# its shims on stop: KillMode=process, so they are killed through the unit's cgroup).
unit_exists() { [[ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]] || systemctl is-active --quiet "$1"; }
if unit_exists kubelet.service; then
	systemctl disable --now kubelet.service >/dev/null 2>&1 || true
	did "stopped and disabled kubelet.service"
fi
if systemctl is-active --quiet kubepods.slice; then
	systemctl stop kubepods.slice || failed "stopping kubepods.slice (the pods' processes)"
	did "stopped kubepods.slice"
fi
# With the cgroupfs driver the pods live outside systemd's slices: kill their cgroup (cgroup v2).
if [[ -f /sys/fs/cgroup/kubepods/cgroup.kill ]]; then
	echo 1 >/sys/fs/cgroup/kubepods/cgroup.kill || failed "killing the pods' processes (/sys/fs/cgroup/kubepods)"
	did "killed the processes of /sys/fs/cgroup/kubepods"
fi
if unit_exists containerd.service; then
	systemctl kill --kill-whom=all -s SIGKILL containerd.service >/dev/null 2>&1 || true
	systemctl disable --now containerd.service >/dev/null 2>&1 || true
	did "stopped and disabled containerd.service (with its shims)"
fi

# 3. Mounts the pods left: volumes under /var/lib/kubelet, sandboxes under /run/containerd,
# snapshots under /var/lib/containerd (never /var/lib/containerd itself: it may be a mount point
# of its own) and the pods' network namespaces.
mapfile -t mounts < <(awk '{print $2}' /proc/self/mounts | grep -E '^(/var/lib/kubelet|/run/containerd|/var/lib/containerd/|/run/netns/cni-)' | sort -r)
for m in "${mounts[@]}"; do
	m=$(printf '%b' "$m") # /proc/self/mounts escapes spaces as \040
	umount -l "$m" 2>/dev/null || failed "unmounting $m"
done
((${#mounts[@]})) && did "unmounted ${#mounts[@]} pod mounts"

# 4. Network: the CNI's interfaces and the rules kube-proxy, flannel and the CNI plugins made.
for link in cni0 flannel.1 kube-ipvs0 kube-bridge; do
	if ip link show "$link" >/dev/null 2>&1; then
		ip link delete "$link" || failed "deleting interface $link"
		did "deleted interface $link"
	fi
done
for ns in /run/netns/cni-*; do
	[[ -e $ns ]] || continue
	ip netns delete "$(basename "$ns")" 2>/dev/null || rm -f "$ns"
	did "deleted network namespace $(basename "$ns")"
done
for ipt in iptables ip6tables; do
	command -v "$ipt-save" >/dev/null 2>&1 || continue
	rules=$("$ipt-save" 2>/dev/null) || continue
	if grep -qE 'KUBE-|FLANNEL|CNI-' <<<"$rules"; then
		# Drop the chains and every rule that mentions or jumps to them; keep the rest.
		if grep -vE 'KUBE-|FLANNEL|CNI-' <<<"$rules" | "$ipt-restore"; then
			did "removed the $ipt rules of kube-proxy, flannel and the CNI plugins"
		else
			failed "restoring $ipt rules without those of kube-proxy, flannel and the CNI plugins"
		fi
	fi
done
if command -v nft >/dev/null 2>&1; then
	for family in ip ip6; do
		if nft list table "$family" kube-proxy >/dev/null 2>&1; then
			nft delete table "$family" kube-proxy || failed "deleting nftables table $family kube-proxy"
			did "deleted nftables table $family kube-proxy"
		fi
	done
fi

# 5. Packages the bundle installed, as recorded by its packages step: <name> holds
# "<version> <file> <sha256> ...". Where each kind of file went (the version map's dest).
dest_of() {
	case "$1" in
	containerd) echo /usr/local ;;
	runc) echo /usr/local/sbin ;;
	cni-plugins) echo /opt/cni/bin ;;
	*) echo /usr/local/bin ;;
	esac
}
remove_path() {
	if [[ -e $1 || -L $1 ]]; then
		rm -rf "$1" || { failed "removing $1"; return; }
		did "removed $1"
	fi
}
debs=()
if [[ -d $state/packages ]]; then
	for record in "$state"/packages/*; do
		[[ -f $record ]] || continue
		name=$(basename "$record")
		dest=$(dest_of "$name")
		read -r -a fields <"$record"
		for ((i = 1; i < ${#fields[@]}; i += 2)); do
			file=${fields[i]}
			case "$file" in
			*.deb)
				pkg=${file%%_*}
				if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok'; then
					debs+=("$pkg")
				fi
				;;
			*.rpm)
				if rpm -q "$name" >/dev/null 2>&1; then
					rpm -e "$name" || failed "rpm -e $name"
					did "removed package $name"
				fi
				;;
			*.tar.gz | *.tgz)
				case "$name" in
				containerd)
					for b in containerd containerd-shim containerd-shim-runc-v1 containerd-shim-runc-v2 containerd-stress ctr; do
						remove_path "$dest/bin/$b"
					done
					;;
				cni-plugins) remove_path "$dest" ;; # the release archive: a directory of plugins
				crictl) remove_path "$dest/crictl" ;;
				*) failed "package $name: do not know what its archive $file put under $dest; remove it by hand" ;;
				esac
				;;
			*) remove_path "$dest/$file" ;;
			esac
		done
	done
fi
# In one call: the packages depend on each other (containerd on runc).
if ((${#debs[@]})); then
	if DEBIAN_FRONTEND=noninteractive dpkg --purge "${debs[@]}" >/dev/null; then
		did "purged packages ${debs[*]}"
	else
		failed "dpkg --purge ${debs[*]}"
	fi
fi

# 6. Units the bundle wrote (containerd's only when the bundle wrote it, not a distribution's).
if [[ -f /etc/systemd/system/containerd.service ]] && grep -q 'installed by dhctl' /etc/systemd/system/containerd.service; then
	remove_path /etc/systemd/system/containerd.service
fi
for p in /etc/systemd/system/kubelet.service /etc/systemd/system/kubelet.service.d /etc/systemd/system/containerd.service.d/http-proxy.conf; do
	remove_path "$p"
done
rmdir /etc/systemd/system/containerd.service.d 2>/dev/null || true
systemctl daemon-reload || failed "systemctl daemon-reload"
systemctl reset-failed kubelet.service containerd.service >/dev/null 2>&1 || true

# 7. State and configuration of the cluster, containerd and the CNI.
# flannel's DaemonSet copies its plugin into /opt/cni/bin; the directories go when nothing else is left.
remove_path /opt/cni/bin/flannel
rmdir /opt/cni/bin /opt/cni 2>/dev/null || true
for p in /etc/kubernetes /var/lib/etcd /var/lib/kubelet /etc/cni /var/lib/cni /run/flannel \
	/etc/containerd /run/containerd /etc/crictl.yaml /etc/modules-load.d/dhctl.conf /etc/sysctl.d/90-dhctl.conf \
	/etc/default/kubelet /var/cache/dhctl; do
	remove_path "$p"
done
if [[ -d /var/lib/containerd ]]; then
	if mountpoint -q /var/lib/containerd; then
		# A mount point of its own (a separate disk, a bind mount): empty it, keep it.
		if [[ -n "$(ls -A /var/lib/containerd)" ]]; then
			find /var/lib/containerd -mindepth 1 -maxdepth 1 -exec rm -rf {} + || failed "emptying /var/lib/containerd"
			did "emptied /var/lib/containerd (a mount point: kept)"
		fi
	else
		remove_path /var/lib/containerd
	fi
fi

# 8. The bundle itself, its step markers and package records: last, so a failed cleanup can be
# re-run knowing what was installed.
if ((failures == 0)); then
	remove_path "$state"
	echo "::clean" >&3
fi
exit $((failures > 0))
