package config

import (
	"strings"
	"testing"
)

// envMarker is in every environment value below; no message may contain it.
const envMarker = "Q8xW3k"

// TestEnvValuesNeverEchoed: a template may read any environment variable, so a value that came
// from the environment is never printed in a problem, wherever it lands and whatever is wrong
// with it; the problem names the variable instead.
func TestEnvValuesNeverEchoed(t *testing.T) {
	ng := func(name, spec string) string {
		return "---\napiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata:\n  name: " + name + "\nspec:\n  nodeType: Static\n" + spec
	}
	for _, tc := range []struct {
		name   string
		config string
		conn   string
		env    map[string]string
		want   string // in the problems, besides the variable's name
	}{
		{name: "pattern", config: validCC + "clusterDomain: {{ env \"AWS_SECRET_ACCESS_KEY\" }}\n",
			env: map[string]string{"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7" + envMarker + "/bPxRfiCYEXAMPLEKEY"}, want: "clusterDomain: value is not valid"},
		{name: "inside a longer value", config: validCC + "clusterDomain: cluster-{{ env \"S\" }}.local\n",
			env: map[string]string{"S": "x_" + envMarker}, want: "clusterDomain: value is not valid"},
		{name: "long value", config: validCC + "clusterDomain: {{ env \"S\" }}\n",
			env: map[string]string{"S": strings.Repeat("A_", 50) + envMarker}, want: "clusterDomain: value is not valid"},
		{name: "through a variable", config: validCC + "{{ $v := env \"S\" }}clusterDomain: {{ $v }}\n",
			env: map[string]string{"S": "x_" + envMarker}, want: "clusterDomain: value is not valid"},
		{name: "enum", config: strings.Replace(validCC, "clusterType: Static", "clusterType: {{ env \"S\" }}", 1),
			env: map[string]string{"S": "Static" + envMarker}, want: "clusterType: value is not one of: Static, Cloud"},
		{name: "number for a string", config: validCC + "kubernetesVersion: {{ env \"S\" }}\n",
			env: map[string]string{"S": "1.3" + strings.Repeat("0", 3) + "4412"}, want: "kubernetesVersion: must be a string, not a number"},
		{name: "unsupported version", config: validCC + "kubernetesVersion: {{ env \"S\" | quote }}\n",
			env: map[string]string{"S": "1.97"}, want: "kubernetesVersion: Kubernetes version the value of environment variable S is not supported by this dhctl"},
		{name: "bad version", config: validCC + "kubernetesVersion: {{ env \"S\" | quote }}\n",
			env: map[string]string{"S": "1." + envMarker}, want: "kubernetesVersion: value is not valid"},
		{name: "cidr host bits", config: strings.Replace(validCC, "10.111.0.0/16", "{{ env \"S\" }}", 1),
			env: map[string]string{"S": "10.111.85.17/16"}, want: "podSubnetCIDR: the value of environment variable S has host bits set; use the network address (the value with its host bits zeroed)"},
		{name: "internal network", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: StaticClusterConfiguration\ninternalNetworkCIDRs:\n- 192.168.0.0/24\n- {{ env \"S\" }}\n",
			env: map[string]string{"S": "10.111.85.0/24"}, want: "internalNetworkCIDRs[1]: the value of environment variable S overlaps podSubnetCIDR"},
		{name: "cidr overlap", config: strings.Replace(validCC, "10.222.0.0/16", "{{ env \"S\" }}", 1),
			env: map[string]string{"S": "10.111.85.0/24"}, want: "podSubnetCIDR: \"10.111.0.0/16\" overlaps serviceSubnetCIDR, the value of environment variable S; choose"},
		{name: "node prefix", config: validCC + "podSubnetNodeCIDRPrefix: {{ env \"S\" | quote }}\n",
			env: map[string]string{"S": "9" + envMarker}, want: "podSubnetNodeCIDRPrefix: value is not valid"},
		{name: "node prefix rule", config: validCC + "podSubnetNodeCIDRPrefix: {{ env \"S\" | quote }}\n",
			env: map[string]string{"S": "14"}, want: "podSubnetNodeCIDRPrefix: the prefix per node, the value of environment variable S, does not fit into podSubnetCIDR"},
		{name: "label key", config: validCC + ng("w", "  nodeTemplate:\n    labels: {{ env \"S\" }}\n"),
			env: map[string]string{"S": "{\"-" + envMarker + "-\": v}"}, want: "is not a valid label key"},
		{name: "label value", config: validCC + ng("w", "  nodeTemplate:\n    labels:\n      role: {{ env \"S\" }}\n"),
			env: map[string]string{"S": "-" + envMarker + "-"}, want: "is not a valid label value"},
		{name: "unknown field from the environment", config: validCC + "{{ env \"S\" }}: 1\n",
			env: map[string]string{"S": "podSubnet" + envMarker}, want: "[<a key from the environment>]: unknown field (the key comes from environment variable S); remove it"},
		{name: "duplicate node group", config: validCC + ng("{{ env \"S\" }}", "") + ng("{{ env \"S\" }}", ""),
			env: map[string]string{"S": "w" + strings.ToLower(envMarker)}, want: "is defined twice"},
		{name: "kind", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: {{ env \"S\" }}\n",
			env: map[string]string{"S": "InitConfigurxtion"}, want: "kind: unknown kind the value of environment variable S; did you mean \"InitConfiguration\"?"},
		{name: "variable name from a variable", config: validCC + "clusterDomain: {{ env (env \"S\") }}\n",
			env: map[string]string{"S": "X" + envMarker}, want: "is not set"},
		{name: "registry host", config: validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfiguration\ndeckhouse:\n  imagesRepo: {{ env \"S\" }}/deckhouse/ce\n  registryDockerCfg: eyJhdXRocyI6eyJvdGhlci5leGFtcGxlLmNvbSI6eyJhdXRoIjoiZFhObGNqcHpNMk55WlhRPSJ9fX0=\n",
			env: map[string]string{"S": "reg-" + strings.ToLower(envMarker) + ".example.com"}, want: "has no credentials for the registry of imagesRepo, the value of environment variable S"},
		{name: "duplicate host", conn: "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: {{ env \"S\" }}\n---\napiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: {{ env \"S\" }}\n",
			env: map[string]string{"S": "h" + strings.ToLower(envMarker) + ".example.com"}, want: "is listed twice"},
		{name: "host pattern", conn: "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHHost\nhost: {{ env \"S\" }}\n",
			env: map[string]string{"S": "user@" + envMarker}, want: "host: value is not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runMalformed(t, malformedCase{config: tc.config, conn: tc.conn}, tc.env)
			if got == "" {
				t.Fatal("loaded without problems")
			}
			for name, v := range tc.env {
				if strings.Contains(got, v) || strings.Contains(got, envMarker) || strings.Contains(got, strings.ToLower(envMarker)) || (len(v) >= 8 && strings.Contains(got, v[len(v)-8:])) {
					t.Errorf("the value of %s is in the problems:\n%s", name, got)
				}
				if !strings.Contains(got, "environment variable "+name) {
					t.Errorf("the problems do not name environment variable %s:\n%s", name, got)
				}
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("the problems lack %q:\n%s", tc.want, got)
			}
		})
	}
}

// TestEnvOriginIsPrecise: in a file that uses the environment, values written in the file are
// still shown as they are: only what came from the environment is held back.
func TestEnvOriginIsPrecise(t *testing.T) {
	cfg := strings.Replace(validCC, "10.111.0.0/16", "10.111.0.1/16", 1) + "clusterDomain: {{ env \"D\" }}\nkubernetesVersion: {{ env \"V\" | quote }}\n---\n" +
		"apiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata:\n  name: {{ env \"N\" }}\nspec:\n  nodeType: Static\n  nodeTemplate:\n    labels:\n      role: -bad-\n      {{ env \"K\" }}: x\n"
	got := runMalformed(t, malformedCase{config: cfg}, map[string]string{"D": "corp.local", "V": "1.97", "N": "workers", "K": "ok-key"})
	for _, want := range []string{
		`podSubnetCIDR: "10.111.0.1/16" has host bits set; use the network address 10.111.0.0/16`,
		`kubernetesVersion: Kubernetes version the value of environment variable V is not supported`,
		`spec.nodeTemplate.labels.role: "-bad-" is not a valid label value`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "environment variable D") || strings.Contains(got, "environment variable N") || strings.Contains(got, "environment variable K") {
		t.Errorf("a problem blames a variable whose value is fine:\n%s", got)
	}
}

func TestScrubEnvValues(t *testing.T) {
	long := strings.Repeat("s3cr", 30)
	ps := Problems{
		{Kind: "Xs3cret", Path: `labels["s3cret"]`, Message: `"s3cret" is wrong`, Hint: "not s3cret\nor " + `"` + long[:57] + `..."`},
		{Message: `quoted "a\"b\nc" here`},
		{Message: "abc stays: too short to tell from words"},
	}
	scrubEnvValues(ps, map[string]string{"S": "s3cret", "L": long, "Q": "a\"b\nc", "A": "abc"})
	want := Problems{
		{Kind: "X(the value of environment variable S)", Path: `labels[(the value of environment variable S)]`, Message: `(the value of environment variable S) is wrong`, Hint: "not (the value of environment variable S)\nor (the value of environment variable L)"},
		{Message: `quoted (the value of environment variable Q) here`},
		{Message: "abc stays: too short to tell from words"},
	}
	for i := range ps {
		if ps[i] != want[i] {
			t.Errorf("problem %d:\n got %#v\nwant %#v", i, ps[i], want[i])
		}
	}
}
