package preflight

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// The evaluations below are pure functions of a host's facts (and the configuration): every
// check's logic is here, tested without SSH.

// supportedOS are the distributions the node bundle knows, with the oldest version accepted.
// family is what the bundle's steps are written for.
var supportedOS = []struct {
	id, family, name string
	minVersion       []int
}{
	{"debian", "debian", "Debian", []int{11}},
	{"ubuntu", "debian", "Ubuntu", []int{20, 4}},
	{"rhel", "rhel", "RHEL", []int{8}},
	{"centos", "rhel", "CentOS Stream", []int{8}},
	{"rocky", "rhel", "Rocky Linux", []int{8}},
	{"almalinux", "rhel", "AlmaLinux", []int{8}},
}

// supportedArch are the architectures the pinned artifacts exist for.
var supportedArch = map[string]bool{"x86_64": true, "amd64": true}

// EvalOS checks the distribution, its version and the CPU architecture.
func EvalOS(f *Facts) Result {
	if !supportedArch[f.Arch] {
		return fail("architecture %q is not supported: the node packages and images are built for x86_64 (amd64) only; use x86_64 machines", f.Arch)
	}
	name := f.OS.PrettyName
	if name == "" {
		name = strings.TrimSpace(f.OS.ID + " " + f.OS.VersionID)
	}
	if f.OS.ID == "" {
		return fail("cannot tell the OS: /etc/os-release is missing or has no ID; supported are %s", supportedList())
	}
	for _, s := range supportedOS {
		if s.id != f.OS.ID {
			continue
		}
		v, okVer := parseVersion(f.OS.VersionID)
		if !okVer {
			return warn("%s without a numeric VERSION_ID (testing or unstable?): supported from %s %s on; expect problems", name, s.name, formatVersion(s.minVersion))
		}
		if compareVersion(v, s.minVersion) < 0 {
			return fail("%s is too old: %s is supported from %s on; upgrade the OS or use another machine", name, s.name, formatVersion(s.minVersion))
		}
		return ok("%s, %s", name, f.Arch)
	}
	for _, like := range f.OS.IDLike {
		for _, s := range supportedOS {
			if s.family == like {
				return warn("%s is not tested; it says it is like %s, so the %s steps are used; supported are %s", name, like, s.family, supportedList())
			}
		}
	}
	return fail("%s is not supported; supported are %s", name, supportedList())
}

func supportedList() string {
	var parts []string
	for _, s := range supportedOS {
		parts = append(parts, s.name+" "+formatVersion(s.minVersion)+"+")
	}
	return strings.Join(parts, ", ")
}

func parseVersion(s string) ([]int, bool) {
	if s == "" {
		return nil, false
	}
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func compareVersion(a, b []int) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func formatVersion(v []int) string {
	if len(v) == 2 {
		return fmt.Sprintf("%d.%02d", v[0], v[1])
	}
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ".")
}

// EvalCPU checks the CPU count against the role's minimum.
func EvalCPU(f *Facts, role inventory.Role, min Minimums) Result {
	if f.CPUs <= 0 {
		return fail("cannot tell the number of CPUs (nproc printed nothing)")
	}
	if f.CPUs < min.CPUs {
		return fail("%d CPU(s), a %s needs at least %d; use a bigger machine (or lower the minimum with --preflight-%s-min cpu=N at your own risk)", f.CPUs, role, min.CPUs, role)
	}
	return ok("%d CPUs (minimum %d)", f.CPUs, min.CPUs)
}

// EvalMemory checks MemTotal against the role's minimum (with memoryTolerance).
func EvalMemory(f *Facts, role inventory.Role, min Minimums) Result {
	if f.MemoryBytes == 0 {
		return fail("cannot tell the memory size (no MemTotal in /proc/meminfo)")
	}
	if float64(f.MemoryBytes) < float64(min.MemoryBytes)*memoryTolerance {
		return fail("%s of memory, a %s needs at least %s; use a bigger machine (or lower the minimum with --preflight-%s-min memory=SIZE at your own risk)",
			FormatBytes(f.MemoryBytes), role, FormatBytes(min.MemoryBytes), role)
	}
	return ok("%s (minimum %s)", FormatBytes(f.MemoryBytes), FormatBytes(min.MemoryBytes))
}

// EvalDisk checks the free space where containerd, kubelet and etcd keep their data (/var/lib,
// or / when /var/lib is not reported).
func EvalDisk(f *Facts, role inventory.Role, min Minimums) Result {
	path := "/var/lib"
	free, found := f.FreeBytes[path]
	if !found {
		path = "/"
		free, found = f.FreeBytes[path]
	}
	if !found {
		return fail("cannot tell the free disk space (df printed nothing for / and /var/lib)")
	}
	if free < min.DiskBytes {
		return fail("%s free on %s, a %s needs at least %s for images, kubelet and etcd data; free some space or grow the disk", FormatBytes(free), path, role, FormatBytes(min.DiskBytes))
	}
	return ok("%s free on %s (minimum %s)", FormatBytes(free), path, FormatBytes(min.DiskBytes))
}

// Port is a TCP port a component of a node listens on.
type Port struct {
	Number    uint16
	Component string
}

// RequiredPorts are the TCP ports a node of the role will listen on (kubeadm's defaults).
func RequiredPorts(role inventory.Role) []Port {
	node := []Port{{10250, "kubelet"}, {10256, "kube-proxy health"}}
	if role == inventory.Worker {
		return node
	}
	return append([]Port{
		{6443, "kube-apiserver"}, {2379, "etcd client"}, {2380, "etcd peer"}, {2381, "etcd metrics"},
		{10257, "kube-controller-manager"}, {10259, "kube-scheduler"},
	}, node...)
}

// EvalPorts checks that nothing listens on the ports the role needs.
func EvalPorts(f *Facts, role inventory.Role) Result {
	if f.ListenSource == "" {
		return fail("cannot tell which ports are in use (neither ss nor /proc/net/tcp answered)")
	}
	byPort := map[uint16][]string{}
	for _, l := range f.Listeners {
		byPort[l.Port()] = append(byPort[l.Port()], l.String())
	}
	var busy []string
	var numbers []string
	for _, p := range RequiredPorts(role) {
		if addrs := byPort[p.Number]; len(addrs) > 0 {
			busy = append(busy, fmt.Sprintf("%d (%s) is in use by a listener on %s", p.Number, p.Component, strings.Join(addrs, ", ")))
			numbers = append(numbers, strconv.Itoa(int(p.Number)))
		}
	}
	if len(busy) > 0 {
		return fail("port %s; stop what listens there (`ss -ltnp 'sport = :%s'` on the host shows the process), or use another machine",
			strings.Join(busy, "; port "), numbers[0])
	}
	var all []string
	for _, p := range RequiredPorts(role) {
		all = append(all, strconv.Itoa(int(p.Number)))
	}
	return ok("free: %s", strings.Join(all, ", "))
}

// Clock drift limits: a second is noise over a slow link; beyond TimeDriftFail, certificates
// issued on one machine are "not yet valid" on another and etcd's leases misbehave.
const (
	TimeDriftWarn = 1 * time.Second
	TimeDriftFail = 10 * time.Second
)

// TimeDrift is how far the host's clock is outside the interval in which the operator read it
// (the command ran between LocalBefore and LocalAfter, so a clock inside that interval may be
// exact). Positive: the host is ahead.
func TimeDrift(f *Facts) time.Duration {
	switch {
	case f.RemoteTime.Before(f.LocalBefore):
		return f.RemoteTime.Sub(f.LocalBefore)
	case f.RemoteTime.After(f.LocalAfter):
		return f.RemoteTime.Sub(f.LocalAfter)
	}
	return 0
}

// EvalTimeDrift compares the host's clock with the operator's.
func EvalTimeDrift(f *Facts) Result {
	if f.RemoteTime.IsZero() {
		return fail("cannot read the host's clock (date +%%s.%%N printed nothing usable)")
	}
	d := TimeDrift(f)
	abs := d.Abs()
	dir := "ahead of"
	if d < 0 {
		dir = "behind"
	}
	fix := "synchronise clocks with NTP (systemd-timesyncd or chrony) on the hosts and on this machine"
	switch {
	case abs > TimeDriftFail:
		return fail("clock is %s %s this machine's (more than %s); %s", abs.Round(time.Millisecond), dir, TimeDriftFail, fix)
	case abs > TimeDriftWarn:
		return warn("clock is %s %s this machine's (more than %s); %s", abs.Round(time.Millisecond), dir, TimeDriftWarn, fix)
	}
	return ok("within %s of this machine's clock (measured drift %s)", TimeDriftWarn, abs.Round(time.Millisecond))
}

// dns1123Subdomain is what Kubernetes accepts as a node name.
var dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// EvalHostname checks that the hostname is a valid node name, that no other host has it
// (sameName lists the other hosts reporting the same name), and that it resolves on the host.
func EvalHostname(f *Facts, sameName []string) Result {
	h := f.Hostname
	switch {
	case h == "":
		return fail("cannot read the hostname")
	case len(h) > 253 || !dns1123Subdomain.MatchString(h):
		return fail("hostname %q is not a valid node name (lowercase letters, digits, '-' and '.', at most 253 characters); set one with `hostnamectl set-hostname NAME`", h)
	case len(sameName) > 0:
		return fail("hostname %q is also the hostname of %s: node names must be unique; give each host its own name with `hostnamectl set-hostname NAME`", h, strings.Join(sameName, ", "))
	case len(f.HostnameAddrs) == 0:
		return fail("hostname %q does not resolve on the host; add a line \"<node address> %s\" to its /etc/hosts", h, h)
	}
	var nonLoopback []string
	for _, a := range f.HostnameAddrs {
		if !a.IsLoopback() {
			nonLoopback = append(nonLoopback, a.String())
		}
	}
	if len(nonLoopback) == 0 {
		return warn("hostname %q resolves only to loopback (%s); map it to the node address in /etc/hosts so components reach the node by name", h, joinAddrs(f.HostnameAddrs))
	}
	return ok("%s, resolves to %s", h, strings.Join(nonLoopback, ", "))
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// hostNetworks are the host's addresses that matter for routing: neither loopback nor link-local.
func hostNetworks(f *Facts) []InterfaceAddr {
	var out []InterfaceAddr
	for _, ia := range f.Interfaces {
		a := ia.Prefix.Addr()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() {
			continue
		}
		out = append(out, ia)
	}
	return out
}

// EvalInternalNetwork checks that one of the host's addresses lies inside
// StaticClusterConfiguration.internalNetworkCIDRs (the node IP is chosen from there).
func EvalInternalNetwork(f *Facts, cidrs []netip.Prefix) Result {
	if len(cidrs) == 0 {
		return ok("no internalNetworkCIDRs configured: nothing to match")
	}
	var inside, all []string
	for _, ia := range hostNetworks(f) {
		all = append(all, ia.Prefix.Addr().String()+" ("+ia.Interface+")")
		for _, c := range cidrs {
			if c.Contains(ia.Prefix.Addr()) {
				inside = append(inside, ia.Prefix.Addr().String()+" ("+ia.Interface+")")
				break
			}
		}
	}
	if len(inside) == 0 {
		have := "none"
		if len(all) > 0 {
			have = strings.Join(all, ", ")
		}
		return fail("no address of the host is inside internalNetworkCIDRs %s (the host has %s); fix StaticClusterConfiguration.internalNetworkCIDRs to include the nodes' network",
			prefixList(cidrs), have)
	}
	if len(inside) > 1 {
		return warn("several addresses inside internalNetworkCIDRs %s: %s; the first is the node IP, narrow the CIDRs if that is not the one", prefixList(cidrs), strings.Join(inside, ", "))
	}
	return ok("node address %s inside %s", inside[0], prefixList(cidrs))
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// ClusterRange is one of the cluster's address ranges and the configuration field it comes from.
type ClusterRange struct {
	Field  string // e.g. "ClusterConfiguration.podSubnetCIDR"
	Prefix netip.Prefix
}

// EvalCIDROverlap checks that none of the cluster's ranges overlaps a network of the host: pod
// or Service traffic would be routed to the wrong place.
func EvalCIDROverlap(f *Facts, ranges []ClusterRange) Result {
	if len(ranges) == 0 {
		return ok("no pod or service ranges configured")
	}
	var clashes []string
	for _, r := range ranges {
		for _, ia := range hostNetworks(f) {
			if r.Prefix.Overlaps(ia.Prefix.Masked()) {
				clashes = append(clashes, fmt.Sprintf("%s %s overlaps %s on %s", r.Field, r.Prefix, ia.Prefix.Masked(), ia.Interface))
			}
		}
	}
	if len(clashes) > 0 {
		sort.Strings(clashes)
		return fail("%s; choose ranges no host network uses", strings.Join(clashes, "; "))
	}
	var names []string
	for _, r := range ranges {
		names = append(names, r.Prefix.String())
	}
	return ok("%s clear of the host's networks", strings.Join(names, ", "))
}

// EvalLeftovers looks for an earlier cluster on the host and says how to remove it.
func EvalLeftovers(f *Facts) Result {
	var found []string
	if len(f.KubernetesFiles) > 0 {
		found = append(found, fmt.Sprintf("/etc/kubernetes holds files (%s)", strings.Join(first(f.KubernetesFiles, 3), ", ")))
	}
	if len(f.EtcdFiles) > 0 {
		found = append(found, "/var/lib/etcd holds etcd data")
	}
	if f.KubeletState == "active" || f.KubeletState == "activating" || f.KubeletState == "reloading" {
		found = append(found, "kubelet is running")
	}
	if len(found) == 0 {
		return ok("no /etc/kubernetes files, no etcd data, kubelet not running")
	}
	clean := "systemctl disable --now kubelet; rm -rf /etc/kubernetes /var/lib/kubelet /var/lib/etcd"
	if f.HasKubeadm {
		clean = "kubeadm reset -f && " + clean
	}
	return fail("an earlier cluster is left on this host: %s; if it is not needed, clean it as root with `%s` (this deletes that cluster's data), or use another machine",
		strings.Join(found, ", "), clean)
}

func first(list []string, n int) []string {
	if len(list) > n {
		return append(append([]string(nil), list[:n]...), "...")
	}
	return list
}
