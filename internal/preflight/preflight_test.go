package preflight

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
)

func TestValidateSkip(t *testing.T) {
	if err := ValidateSkip([]string{"ports", "registry", "time-drift"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"port", `"port": no such check; valid names: cidr-overlap, cpu, disk, hostname`},
		{"ssh", "cannot be skipped"},
	} {
		err := ValidateSkip([]string{tc.name})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, c := range Checks() {
		if c.Name == "" || c.Title == "" || (c.Scope != ScopeHost && c.Scope != ScopeFirstMaster) {
			t.Errorf("catalog entry %+v incomplete", c)
		}
	}
}

func TestParseMinimums(t *testing.T) {
	m, err := ParseMinimums(DefaultMinimums(inventory.Master), map[string]string{"cpu": "4", "memory": "512Mi", "disk": "1.5G"})
	if err != nil {
		t.Fatal(err)
	}
	if m.CPUs != 4 || m.MemoryBytes != 512*mib || m.DiskBytes != 1_500_000_000 {
		t.Errorf("parsed %+v", m)
	}
	if m, _ := ParseMinimums(DefaultMinimums(inventory.Worker), nil); m != DefaultMinimums(inventory.Worker) {
		t.Errorf("no overrides changed the defaults: %+v", m)
	}
	for kv, want := range map[string]string{
		"cpu=two":     "whole number",
		"memory=lots": "size such as 4Gi",
		"gpu=1":       "unknown minimum; valid keys: cpu, memory, disk",
		"disk=-1Gi":   "size such as",
	} {
		k, v, _ := strings.Cut(kv, "=")
		if _, err := ParseMinimums(Minimums{}, map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", kv, err, want)
		}
	}
	if got := DefaultMinimums(inventory.Master).String(); got != "cpu=2,memory=4Gi,disk=20Gi" {
		t.Errorf("String %q", got)
	}
}

func TestParseBytesAndFormat(t *testing.T) {
	for in, want := range map[string]uint64{"1024": 1024, "4Gi": 4 * gib, "2K": 2000, "1Ti": tib, "0.5Mi": mib / 2} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[uint64]string{512: "512", 1536: "1.5Ki", 4 * gib: "4Gi", 3900 * mib: "3.8Gi"} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestReport(t *testing.T) {
	r := &Report{Rows: []Row{
		{"root@10.0.0.1:22", CheckSSH, Result{StatusOK, "logged in"}},
		{"root@10.0.0.1:22", CheckPorts, Result{StatusFailed, "port 6443 (kube-apiserver) is in use"}},
		{"root@10.0.0.1:22", CheckTimeDrift, Result{StatusWarning, "clock is 2s ahead"}},
		{"root@10.0.0.2:22", CheckSSH, Result{StatusFailed, "authentication failed"}},
		{"root@10.0.0.2:22", CheckOS, Result{StatusNotRun, "no SSH connection"}},
		{"root@10.0.0.2:22", CheckDisk, Result{StatusSkipped, "skipped with --preflight-skip"}},
	}}
	var out bytes.Buffer
	r.Write(&out)
	for _, want := range []string{"HOST", "root@10.0.0.2:22  ssh", "FAILED", "preflight: 2 failed, 1 warning, 1 ok, 1 skipped, 1 not run"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	err := r.Err()
	if err == nil {
		t.Fatal("failed rows but no error")
	}
	for _, want := range []string{"2 check(s) failed", "ports on root@10.0.0.1:22: port 6443", "ssh on root@10.0.0.2:22: authentication failed", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if (&Report{Rows: r.Rows[:1]}).Err() != nil {
		t.Error("all ok, yet an error")
	}
}

func TestInputsFrom(t *testing.T) {
	cfg := &config.Cluster{
		ClusterConfiguration:       config.ClusterConfiguration{PodSubnetCIDR: "10.111.0.0/16", ServiceSubnetCIDR: "10.222.0.1/16"},
		StaticClusterConfiguration: &config.StaticClusterConfiguration{InternalNetworkCIDRs: []string{"10.77.1.0/24"}},
		InitConfiguration: &config.InitConfiguration{Deckhouse: config.DeckhouseInit{
			ImagesRepo: "registry.example:5000/dhctl", RegistryScheme: "HTTPS",
			// {"auths":{"registry.example:5000":{"auth":"dTpw"}}} with dTpw = base64("u:p")
			RegistryDockerCfg: "eyJhdXRocyI6eyJyZWdpc3RyeS5leGFtcGxlOjUwMDAiOnsiYXV0aCI6ImRUcHcifX19",
		}},
	}
	in, err := InputsFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.InternalNetworkCIDRs) != 1 || in.InternalNetworkCIDRs[0].String() != "10.77.1.0/24" {
		t.Errorf("internal CIDRs %v", in.InternalNetworkCIDRs)
	}
	if len(in.ClusterRanges) != 2 || in.ClusterRanges[1].Prefix.String() != "10.222.0.0/16" {
		t.Errorf("ranges %v", in.ClusterRanges)
	}
	if r := in.Registry; r == nil || r.Repo != "registry.example:5000/dhctl" || r.Scheme != "https" || r.User != "u" || r.Password != "p" {
		t.Errorf("registry %+v", in.Registry)
	}
	cfg.StaticClusterConfiguration.InternalNetworkCIDRs = []string{"10.77.1.0/33"}
	if _, err := InputsFrom(cfg); err == nil || !strings.Contains(err.Error(), "internalNetworkCIDRs[0]") {
		t.Errorf("bad CIDR: %v", err)
	}
	if in, err := InputsFrom(nil); err != nil || in.Registry != nil {
		t.Errorf("nil config: %+v, %v", in, err)
	}
}
