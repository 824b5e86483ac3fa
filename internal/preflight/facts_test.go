package preflight

import (
	"errors"
	"net/netip"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A facts script output as a Debian 12 machine prints it (trimmed).
const sampleFacts = `
@time
1700000000.250000000

@os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian

@arch
x86_64

@nproc
4

@meminfo
MemTotal:        8045348 kB

@disk
/ 41943040
/var/lib 20971520

@listen-ss
LISTEN 0      4096         0.0.0.0:6443      0.0.0.0:*
LISTEN 0      128          [::]:22           [::]:*
LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*
LISTEN 0      128                *:9100            *:*

@hostname
node-1

@resolve
10.77.1.11

@addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: host0@if7    inet 10.77.1.11/24 brd 10.77.1.255 scope global host0\       valid_lft forever preferred_lft forever
2: host0@if7    inet6 fe80::1/64 scope link \       valid_lft forever preferred_lft forever

@kubernetes-files
/etc/kubernetes/admin.conf

@etcd-files

@kubelet
inactive

@kubeadm
/usr/bin/kubeadm

@end
`

func TestParseFacts(t *testing.T) {
	f, err := ParseFacts(sampleFacts)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := &Facts{
		RemoteTime:    time.Unix(1_700_000_000, 250_000_000),
		OS:            OSRelease{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)"},
		Arch:          "x86_64",
		CPUs:          4,
		MemoryBytes:   8045348 * 1024,
		FreeBytes:     map[string]uint64{"/": 40 * gib, "/var/lib": 20 * gib},
		Listeners:     []netip.AddrPort{ap("0.0.0.0:6443"), ap("127.0.0.53:53"), ap("[::]:22"), ap("[::]:9100")},
		ListenSource:  "ss",
		Hostname:      "node-1",
		HostnameAddrs: []netip.Addr{netip.MustParseAddr("10.77.1.11")},
		Interfaces: []InterfaceAddr{
			{"lo", netip.MustParsePrefix("127.0.0.1/8")},
			{"host0", netip.MustParsePrefix("10.77.1.11/24")},
			{"host0", netip.MustParsePrefix("fe80::1/64")},
		},
		KubernetesFiles: []string{"/etc/kubernetes/admin.conf"},
		KubeletState:    "inactive",
		HasKubeadm:      true,
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", f, want)
	}
}

func TestParseFactsIncomplete(t *testing.T) {
	_, err := ParseFacts("@time\n1700000000.1\n@arch\nx86_64\n")
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("truncated output: err %v, want 'incomplete'", err)
	}
}

func TestParseProcNetTCP(t *testing.T) {
	lines := []string{
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0",
		"   1: 00000000:1923 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0",
		"   2: 0B014D0A:0016 FE014D0A:C350 01 00000000:00000000 02:00000000 00000000     0        0 3 1 0 100 0 0 10 0",
		"   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0",
		"   1: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0",
	}
	got := parseProcNetTCP(lines)
	ap := netip.MustParseAddrPort
	want := []netip.AddrPort{ap("0.0.0.0:6435"), ap("127.0.0.1:80"), ap("127.0.0.1:8080"), ap("[::]:22")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v (the established socket on :22 must not count)", got, want)
	}
}

// The script runs under a plain POSIX shell and its output parses on this machine too.
func TestFactsScriptRunsLocally(t *testing.T) {
	out, err := exec.Command("sh", "-c", factsScript).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("facts script: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	f, err := ParseFacts(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if f.Arch == "" || f.CPUs == 0 || f.MemoryBytes == 0 || f.Hostname == "" || f.RemoteTime.IsZero() || f.OS.ID == "" || len(f.FreeBytes) == 0 || f.ListenSource == "" {
		t.Errorf("facts of this machine incomplete: %+v", f)
	}
	if d := time.Since(f.RemoteTime); d < 0 || d > time.Minute {
		t.Errorf("remote time %v is not now", f.RemoteTime)
	}
}

func TestParseUnixTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1700000000.000000001": time.Unix(1_700_000_000, 1),
		"1700000000.5":         time.Unix(1_700_000_000, 500_000_000),
		"1700000000.N":         time.Unix(1_700_000_000, 0),
		"1700000000":           time.Unix(1_700_000_000, 0),
	} {
		got, err := parseUnixTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseUnixTime("yesterday"); err == nil {
		t.Error("garbage parsed")
	}
}
