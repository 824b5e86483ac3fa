package preflight

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// expect checks a result's status and that its message contains every fragment.
func expect(t *testing.T, name string, got Result, status Status, fragments ...string) {
	t.Helper()
	if got.Status != status {
		t.Errorf("%s: status %q, want %q (message: %s)", name, got.Status, status, got.Message)
	}
	for _, f := range fragments {
		if !strings.Contains(got.Message, f) {
			t.Errorf("%s: message %q lacks %q", name, got.Message, f)
		}
	}
}

func TestEvalOS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		os     OSRelease
		arch   string
		status Status
		want   []string
	}{
		{"debian 12", OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"}, "x86_64", StatusOK, []string{"Debian GNU/Linux 12", "x86_64"}},
		{"ubuntu 22.04", OSRelease{ID: "ubuntu", VersionID: "22.04"}, "x86_64", StatusOK, nil},
		{"ubuntu 18.04 too old", OSRelease{ID: "ubuntu", VersionID: "18.04", PrettyName: "Ubuntu 18.04"}, "x86_64", StatusFailed, []string{"too old", "20.04"}},
		{"debian 10 too old", OSRelease{ID: "debian", VersionID: "10"}, "x86_64", StatusFailed, []string{"too old"}},
		{"rocky 9", OSRelease{ID: "rocky", VersionID: "9.3", IDLike: []string{"rhel", "centos", "fedora"}}, "x86_64", StatusOK, nil},
		{"debian testing", OSRelease{ID: "debian", PrettyName: "Debian trixie/sid"}, "x86_64", StatusWarning, []string{"VERSION_ID"}},
		{"derivative", OSRelease{ID: "linuxmint", VersionID: "21", IDLike: []string{"ubuntu", "debian"}, PrettyName: "Linux Mint 21"}, "x86_64", StatusWarning, []string{"not tested", "like debian"}},
		{"unsupported", OSRelease{ID: "alpine", VersionID: "3.19", PrettyName: "Alpine Linux v3.19"}, "x86_64", StatusFailed, []string{"Alpine", "not supported", "Debian 11+"}},
		{"no os-release", OSRelease{}, "x86_64", StatusFailed, []string{"/etc/os-release"}},
		{"arm", OSRelease{ID: "debian", VersionID: "12"}, "aarch64", StatusFailed, []string{"aarch64", "x86_64"}},
	} {
		expect(t, tc.name, EvalOS(&Facts{OS: tc.os, Arch: tc.arch}), tc.status, tc.want...)
	}
}

func TestEvalResources(t *testing.T) {
	master := DefaultMinimums(inventory.Master)
	worker := DefaultMinimums(inventory.Worker)
	for _, tc := range []struct {
		name   string
		got    Result
		status Status
		want   []string
	}{
		{"cpu ok", EvalCPU(&Facts{CPUs: 2}, inventory.Master, master), StatusOK, []string{"2 CPUs"}},
		{"cpu low", EvalCPU(&Facts{CPUs: 1}, inventory.Master, master), StatusFailed, []string{"1 CPU(s)", "master needs at least 2", "--preflight-master-min"}},
		{"cpu worker", EvalCPU(&Facts{CPUs: 1}, inventory.Worker, worker), StatusOK, nil},
		{"cpu unknown", EvalCPU(&Facts{}, inventory.Master, master), StatusFailed, []string{"cannot tell"}},
		{"memory ok", EvalMemory(&Facts{MemoryBytes: 24 * gib}, inventory.Master, master), StatusOK, []string{"24Gi"}},
		// A 4 GiB machine reports a little less as MemTotal: accepted.
		{"memory 4GiB machine", EvalMemory(&Facts{MemoryBytes: 3900 * mib}, inventory.Master, master), StatusOK, nil},
		{"memory low", EvalMemory(&Facts{MemoryBytes: 2 * gib}, inventory.Master, master), StatusFailed, []string{"2Gi of memory", "at least 4Gi"}},
		{"memory unknown", EvalMemory(&Facts{}, inventory.Master, master), StatusFailed, []string{"MemTotal"}},
		{"disk ok", EvalDisk(&Facts{FreeBytes: map[string]uint64{"/": 100 * gib, "/var/lib": 50 * gib}}, inventory.Master, master), StatusOK, []string{"50Gi free on /var/lib"}},
		{"disk falls back to /", EvalDisk(&Facts{FreeBytes: map[string]uint64{"/": 30 * gib}}, inventory.Master, master), StatusOK, []string{"on /"}},
		{"disk low", EvalDisk(&Facts{FreeBytes: map[string]uint64{"/var/lib": 5 * gib}}, inventory.Master, master), StatusFailed, []string{"5Gi free on /var/lib", "at least 20Gi"}},
		{"disk unknown", EvalDisk(&Facts{FreeBytes: map[string]uint64{}}, inventory.Master, master), StatusFailed, []string{"cannot tell"}},
	} {
		expect(t, tc.name, tc.got, tc.status, tc.want...)
	}
}

func TestEvalPorts(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name   string
		f      Facts
		role   inventory.Role
		status Status
		want   []string
	}{
		{"free", Facts{ListenSource: "ss", Listeners: []netip.AddrPort{ap("0.0.0.0:22"), ap("[::]:22")}}, inventory.Master, StatusOK, []string{"6443"}},
		{"apiserver port taken", Facts{ListenSource: "ss", Listeners: []netip.AddrPort{ap("0.0.0.0:6443")}}, inventory.Master, StatusFailed, []string{"6443 (kube-apiserver)", "0.0.0.0:6443", "sport = :6443"}},
		{"two taken", Facts{ListenSource: "ss", Listeners: []netip.AddrPort{ap("127.0.0.1:2379"), ap("[::]:10250")}}, inventory.Master, StatusFailed, []string{"2379 (etcd client)", "10250 (kubelet)"}},
		{"worker ignores 6443", Facts{ListenSource: "ss", Listeners: []netip.AddrPort{ap("0.0.0.0:6443")}}, inventory.Worker, StatusOK, nil},
		{"unknown", Facts{}, inventory.Master, StatusFailed, []string{"cannot tell"}},
	} {
		expect(t, tc.name, EvalPorts(&tc.f, tc.role), tc.status, tc.want...)
	}
}

func TestEvalTimeDrift(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	at := func(remote time.Duration) *Facts {
		return &Facts{LocalBefore: base, LocalAfter: base.Add(200 * time.Millisecond), RemoteTime: base.Add(remote)}
	}
	for _, tc := range []struct {
		name   string
		f      *Facts
		drift  time.Duration
		status Status
		want   []string
	}{
		{"inside the round trip", at(100 * time.Millisecond), 0, StatusOK, nil},
		{"slightly ahead", at(700 * time.Millisecond), 500 * time.Millisecond, StatusOK, nil},
		{"3s ahead", at(3200 * time.Millisecond), 3 * time.Second, StatusWarning, []string{"3s ahead of", "NTP"}},
		{"1 min behind", at(-time.Minute), -time.Minute, StatusFailed, []string{"1m0s behind", "NTP"}},
	} {
		if d := TimeDrift(tc.f); d != tc.drift {
			t.Errorf("%s: drift %v, want %v", tc.name, d, tc.drift)
		}
		expect(t, tc.name, EvalTimeDrift(tc.f), tc.status, tc.want...)
	}
	expect(t, "no clock", EvalTimeDrift(&Facts{}), StatusFailed, "cannot read")
}

func TestEvalHostname(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		f        Facts
		sameName []string
		status   Status
		want     []string
	}{
		{"ok", Facts{Hostname: "node-1", HostnameAddrs: addrs("10.0.0.5")}, nil, StatusOK, []string{"node-1", "10.0.0.5"}},
		{"duplicate", Facts{Hostname: "node", HostnameAddrs: addrs("10.0.0.5")}, []string{"root@10.0.0.6:22"}, StatusFailed, []string{"also the hostname of root@10.0.0.6:22", "unique"}},
		{"uppercase", Facts{Hostname: "Node_1", HostnameAddrs: addrs("10.0.0.5")}, nil, StatusFailed, []string{"not a valid node name", "hostnamectl"}},
		{"unresolvable", Facts{Hostname: "node-1"}, nil, StatusFailed, []string{"does not resolve", "/etc/hosts"}},
		{"loopback only", Facts{Hostname: "node-1", HostnameAddrs: addrs("127.0.1.1")}, nil, StatusWarning, []string{"loopback"}},
		{"unknown", Facts{}, nil, StatusFailed, []string{"cannot read"}},
	} {
		expect(t, tc.name, EvalHostname(&tc.f, tc.sameName), tc.status, tc.want...)
	}
}

func ifaces(specs ...string) []InterfaceAddr {
	var out []InterfaceAddr
	for _, s := range specs {
		name, prefix, _ := strings.Cut(s, " ")
		out = append(out, InterfaceAddr{Interface: name, Prefix: netip.MustParsePrefix(prefix)})
	}
	return out
}

func TestEvalInternalNetwork(t *testing.T) {
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.77.1.0/24")}
	for _, tc := range []struct {
		name   string
		f      Facts
		cidrs  []netip.Prefix
		status Status
		want   []string
	}{
		{"inside", Facts{Interfaces: ifaces("lo 127.0.0.1/8", "host0 10.77.1.11/24")}, cidrs, StatusOK, []string{"10.77.1.11 (host0)"}},
		{"outside", Facts{Interfaces: ifaces("lo 127.0.0.1/8", "eth0 192.168.5.3/24", "eth0 fe80::1/64")}, cidrs, StatusFailed, []string{"192.168.5.3 (eth0)", "10.77.1.0/24", "internalNetworkCIDRs"}},
		{"two inside", Facts{Interfaces: ifaces("eth0 10.77.1.11/24", "eth1 10.77.1.12/24")}, cidrs, StatusWarning, []string{"several"}},
		{"not configured", Facts{}, nil, StatusOK, []string{"no internalNetworkCIDRs"}},
	} {
		expect(t, tc.name, EvalInternalNetwork(&tc.f, tc.cidrs), tc.status, tc.want...)
	}
}

func TestEvalCIDROverlap(t *testing.T) {
	ranges := []ClusterRange{
		{"ClusterConfiguration.podSubnetCIDR", netip.MustParsePrefix("10.111.0.0/16")},
		{"ClusterConfiguration.serviceSubnetCIDR", netip.MustParsePrefix("10.222.0.0/16")},
	}
	for _, tc := range []struct {
		name   string
		f      Facts
		ranges []ClusterRange
		status Status
		want   []string
	}{
		{"clear", Facts{Interfaces: ifaces("lo 127.0.0.1/8", "host0 10.77.1.11/24")}, ranges, StatusOK, nil},
		{"pod range inside host network", Facts{Interfaces: ifaces("eth0 10.0.0.5/8")}, ranges, StatusFailed,
			[]string{"podSubnetCIDR 10.111.0.0/16 overlaps 10.0.0.0/8 on eth0", "serviceSubnetCIDR 10.222.0.0/16 overlaps 10.0.0.0/8 on eth0"}},
		{"host network inside service range", Facts{Interfaces: ifaces("eth1 10.222.3.4/24")}, ranges, StatusFailed, []string{"serviceSubnetCIDR", "10.222.3.0/24 on eth1"}},
		{"loopback ignored", Facts{Interfaces: ifaces("lo 127.0.0.1/8")}, []ClusterRange{{"x", netip.MustParsePrefix("127.0.0.0/16")}}, StatusOK, nil},
		{"nothing configured", Facts{}, nil, StatusOK, nil},
	} {
		expect(t, tc.name, EvalCIDROverlap(&tc.f, tc.ranges), tc.status, tc.want...)
	}
}

func TestEvalLeftovers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      Facts
		status Status
		want   []string
	}{
		{"clean", Facts{KubeletState: "inactive"}, StatusOK, nil},
		{"clean without systemd answer", Facts{KubeletState: "unknown"}, StatusOK, nil},
		{"old cluster", Facts{KubernetesFiles: []string{"/etc/kubernetes/admin.conf", "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/pki/ca.key"},
			EtcdFiles: []string{"/var/lib/etcd/member/snap/db"}, KubeletState: "active", HasKubeadm: true}, StatusFailed,
			[]string{"/etc/kubernetes/admin.conf", "...", "etcd data", "kubelet is running", "kubeadm reset -f && systemctl disable --now kubelet; rm -rf /etc/kubernetes"}},
		{"kubelet only, no kubeadm", Facts{KubeletState: "active"}, StatusFailed, []string{"kubelet is running", "`systemctl disable --now kubelet"}},
	} {
		expect(t, tc.name, EvalLeftovers(&tc.f), tc.status, tc.want...)
	}
}
