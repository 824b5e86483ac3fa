package preflight

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// factsScript gathers everything the host checks need in one round trip, as the login user and
// without sudo: it only reads. Each section starts with a line "@name"; a section's command may
// fail or print nothing (the parser then reports the fact as unknown). The time comes first so
// the operator's clock readings around the command bound it tightly.
const factsScript = `LC_ALL=C; export LC_ALL
PATH=$PATH:/usr/sbin:/sbin; export PATH
s() { printf '\n@%s\n' "$1"; }
s time; date +%s.%N
s os-release; cat /etc/os-release 2>/dev/null
s arch; uname -m
s nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
s meminfo; grep '^MemTotal:' /proc/meminfo
s disk; for p in / /var/lib; do [ -d "$p" ] && df -Pk "$p" | tail -n 1 | awk -v p="$p" '{print p, $4}'; done
if command -v ss >/dev/null 2>&1; then s listen-ss; ss -Hltn; else s listen-proc; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; fi
s hostname; hostname
s resolve; getent ahosts "$(hostname)" 2>/dev/null | awk '{print $1}' | sort -u
s addr; ip -o addr show 2>/dev/null
s kubernetes-files; find /etc/kubernetes -maxdepth 3 -type f 2>/dev/null | head -n 20
s etcd-files; find /var/lib/etcd -maxdepth 2 -type f 2>/dev/null | head -n 5
s kubelet; systemctl is-active kubelet 2>/dev/null
s kubeadm; command -v kubeadm
s end
`

// Facts are what one host told about itself. Zero values mean "not reported".
type Facts struct {
	// RemoteTime is the host's clock; LocalBefore/LocalAfter are the operator's clock just
	// before the facts command started and just after it returned.
	RemoteTime, LocalBefore, LocalAfter time.Time

	OS   OSRelease
	Arch string // uname -m
	CPUs int
	// MemoryBytes is MemTotal: physical memory minus what the kernel reserved.
	MemoryBytes uint64
	// FreeBytes is the space available to non-root users per path ("/", "/var/lib").
	FreeBytes map[string]uint64

	// Listeners are the listening TCP sockets. ListenSource is "ss" or "/proc/net/tcp".
	Listeners    []netip.AddrPort
	ListenSource string

	Hostname string
	// HostnameAddrs are the addresses the host resolves its own name to (getent ahosts).
	HostnameAddrs []netip.Addr
	Interfaces    []InterfaceAddr

	KubernetesFiles []string // files under /etc/kubernetes (first 20)
	EtcdFiles       []string // files under /var/lib/etcd (first 5)
	KubeletState    string   // systemctl is-active kubelet: active, inactive, unknown, ...
	HasKubeadm      bool
}

// OSRelease is the part of /etc/os-release the checks use.
type OSRelease struct {
	ID, VersionID, PrettyName string
	IDLike                    []string
}

// InterfaceAddr is one address of a network interface, with its prefix.
type InterfaceAddr struct {
	Interface string
	Prefix    netip.Prefix
}

// gatherFacts runs the facts script on the host (one SSH session) and parses its output. With
// sudo (when it works) the script also sees root-only places such as /var/lib/etcd (0700); it
// still only reads.
func gatherFacts(ctx context.Context, c *ssh.Client, sudo bool, now func() time.Time) (*Facts, error) {
	before := now()
	out, err := c.Output(ctx, ssh.Command{Cmd: "sh -s", Stdin: strings.NewReader(factsScript), Sudo: sudo, LogAs: "preflight: gather facts"})
	after := now()
	if err != nil {
		return nil, fmt.Errorf("gathering facts: %w", err)
	}
	f, err := ParseFacts(out)
	if err != nil {
		return nil, err
	}
	f.LocalBefore, f.LocalAfter = before, after
	return f, nil
}

// ParseFacts parses the output of the facts script.
func ParseFacts(out string) (*Facts, error) {
	sections := map[string][]string{}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "@"); ok && !strings.ContainsAny(name, " \t") && name != "" {
			cur = name
			sections[cur] = sections[cur][:0:0]
			continue
		}
		if cur != "" && strings.TrimSpace(line) != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	if _, ok := sections["end"]; !ok {
		return nil, fmt.Errorf("gathering facts: the output is incomplete (no end marker); got %d bytes", len(out))
	}
	f := &Facts{FreeBytes: map[string]uint64{}}
	first := func(name string) string {
		if l := sections[name]; len(l) > 0 {
			return strings.TrimSpace(l[0])
		}
		return ""
	}
	if t := first("time"); t != "" {
		if ts, err := parseUnixTime(t); err == nil {
			f.RemoteTime = ts
		}
	}
	f.OS = parseOSRelease(sections["os-release"])
	f.Arch = first("arch")
	f.CPUs, _ = strconv.Atoi(first("nproc"))
	if fields := strings.Fields(first("meminfo")); len(fields) >= 2 {
		if kb, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
			f.MemoryBytes = kb * 1024
		}
	}
	for _, l := range sections["disk"] {
		fields := strings.Fields(l)
		if len(fields) != 2 {
			continue
		}
		if kb, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
			f.FreeBytes[fields[0]] = kb * 1024
		}
	}
	if l, ok := sections["listen-ss"]; ok {
		f.ListenSource, f.Listeners = "ss", parseSS(l)
	} else if l, ok := sections["listen-proc"]; ok {
		f.ListenSource, f.Listeners = "/proc/net/tcp", parseProcNetTCP(l)
	}
	f.Hostname = first("hostname")
	for _, l := range sections["resolve"] {
		if a, err := netip.ParseAddr(strings.TrimSpace(l)); err == nil {
			f.HostnameAddrs = append(f.HostnameAddrs, a)
		}
	}
	f.Interfaces = parseIPAddr(sections["addr"])
	f.KubernetesFiles = trimAll(sections["kubernetes-files"])
	f.EtcdFiles = trimAll(sections["etcd-files"])
	f.KubeletState = first("kubelet")
	f.HasKubeadm = first("kubeadm") != ""
	return f, nil
}

func trimAll(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// parseUnixTime parses "seconds.nanoseconds" as date +%s.%N prints it.
func parseUnixTime(s string) (time.Time, error) {
	secStr, nsStr, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var ns int64
	if nsStr != "" && nsStr != "N" { // busybox date prints a literal N
		nsStr = (nsStr + "000000000")[:9]
		if ns, err = strconv.ParseInt(nsStr, 10, 64); err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(sec, ns), nil
}

func parseOSRelease(lines []string) OSRelease {
	var r OSRelease
	for _, l := range lines {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		switch k {
		case "ID":
			r.ID = strings.ToLower(v)
		case "VERSION_ID":
			r.VersionID = v
		case "PRETTY_NAME":
			r.PrettyName = v
		case "ID_LIKE":
			r.IDLike = strings.Fields(strings.ToLower(v))
		}
	}
	return r
}

// parseSS parses `ss -Hltn`: "LISTEN 0 4096 0.0.0.0:22 0.0.0.0:*" (local address in column 4;
// IPv6 as [::]:22, scoped as 127.0.0.53%lo:53 or [fe80::1]%eth0:22).
func parseSS(lines []string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 4 {
			continue
		}
		local := fields[3]
		i := strings.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		host, portStr := local[:i], local[i+1:]
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			continue
		}
		host = strings.TrimPrefix(host, "[")
		if j := strings.IndexByte(host, '%'); j >= 0 {
			host = host[:j]
		}
		host = strings.TrimSuffix(host, "]")
		addr, err := netip.ParseAddr(host)
		if err != nil {
			if host != "*" {
				continue
			}
			addr = netip.IPv6Unspecified()
		}
		out = append(out, netip.AddrPortFrom(addr, uint16(port)))
	}
	return sortedAddrPorts(out)
}

// parseProcNetTCP parses /proc/net/tcp and /proc/net/tcp6, keeping sockets in state 0A (LISTEN).
// Addresses are hex in host byte order per 32-bit word: 0100007F:1F90 is 127.0.0.1:8080.
func parseProcNetTCP(lines []string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			continue
		}
		raw, err := hex.DecodeString(hexAddr)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		for w := 0; w < len(raw); w += 4 { // each 32-bit word is little-endian
			raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
		}
		addr, _ := netip.AddrFromSlice(raw)
		out = append(out, netip.AddrPortFrom(addr.Unmap(), uint16(port)))
	}
	return sortedAddrPorts(out)
}

func sortedAddrPorts(in []netip.AddrPort) []netip.AddrPort {
	sort.Slice(in, func(i, j int) bool { return in[i].Compare(in[j]) < 0 })
	return in
}

// parseIPAddr parses `ip -o addr show`:
// "2: host0    inet 10.77.1.11/24 brd 10.77.1.255 scope global host0\       valid_lft forever ...".
func parseIPAddr(lines []string) []InterfaceAddr {
	var out []InterfaceAddr
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 4 || (fields[2] != "inet" && fields[2] != "inet6") {
			continue
		}
		p, err := netip.ParsePrefix(fields[3])
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(fields[1], "@") // "eth0@if12"
		out = append(out, InterfaceAddr{Interface: name, Prefix: p})
	}
	return out
}
