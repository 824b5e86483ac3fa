package config

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestDeckhouseKindsAreResources: kinds of Deckhouse that are not configuration documents stay
// resources, though they start with or look like one (NodeGroupConfiguration, ModuleSource).
func TestDeckhouseKindsAreResources(t *testing.T) {
	var docs []string
	for _, k := range []string{"NodeGroupConfiguration", "ModuleSource", "ModuleUpdatePolicy", "ModulePullOverride", "NodeUser",
		"StaticInstance", "SSHCredentials", "DeckhouseRelease", "ClusterAuthorizationRule", "IngressNginxController", "ClusterLogDestination"} {
		docs = append(docs, "apiVersion: deckhouse.io/v1alpha1\nkind: "+k+"\nmetadata: {name: x}\n")
	}
	c, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{writeFile(t, "c.yml", validCC+"---\n"+strings.Join(docs, "---\n"))}})
	if ps != nil {
		t.Fatal(ps)
	}
	if len(c.Resources) != len(docs) {
		t.Errorf("%d resources, want %d", len(c.Resources), len(docs))
	}
}

func TestKindSuggestion(t *testing.T) {
	known := []string{KindClusterConfiguration, KindInitConfiguration, KindStaticClusterConfiguration, KindSSHConfig, KindSSHHost, KindNodeGroup, KindModuleConfig}
	for kind, want := range map[string]string{
		"InitConfig": KindInitConfiguration, "initconfiguration": KindInitConfiguration, "ClusterConfig": KindClusterConfiguration,
		"SSHConfiguration": KindSSHConfig, "ModuleConfiguration": KindModuleConfig, "StaticClusterConf": KindStaticClusterConfiguration,
		"MyStaticClusterConfiguration": KindStaticClusterConfiguration, "NodeGroups": KindNodeGroup,
		"NodeGroupConfiguration": "", "Configuration": "", "Static": "", "VsphereClusterConfiguration": "", "SSH": "",
	} {
		got, ok := kindSuggestion(kind, known)
		if ok != (want != "") || got != want {
			t.Errorf("kindSuggestion(%q) = %q, %v; want %q", kind, got, ok, want)
		}
	}
}

func TestRequire(t *testing.T) {
	bootstrap := []Requirement{{Kind: KindInitConfiguration, By: "bootstrap"}, {Kind: KindSSHConfig, By: "bootstrap"}}
	ssh := writeFile(t, "ssh.yml", "apiVersion: dhctl.deckhouse.io/v1alpha1\nkind: SSHConfig\nsshUser: u\nsshAgentPrivateKeys:\n- key: {{ env \"KEY\" | quote }}\n")
	env := envMap(map[string]string{"KEY": newSSHKey(t, "")})
	for _, tc := range []struct {
		name   string
		config string
		conn   []string
		want   string // "" = loads
	}{
		{"both there", validCC + "---\n" + validInit, []string{ssh}, ""},
		{"none there", validCC, nil, "bootstrap needs a document of kind InitConfiguration, and the --config files have none; add one with apiVersion: deckhouse.io/v1, kind: InitConfiguration\n" +
			"bootstrap needs a document of kind SSHConfig, and the --connection-config and --config files have none; add one with apiVersion: dhctl.deckhouse.io/v1alpha1, kind: SSHConfig"},
		{"invalid one is not also missing", validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfiguration\ndeckhouse: {}\n", []string{ssh},
			"c.yml: document 2 (InitConfiguration), line 9: deckhouse.imagesRepo: required field is missing; add it, e.g. imagesRepo: registry.example.com/deckhouse/ce"},
		{"mistyped one is not also missing", validCC + "---\napiVersion: deckhouse.io/v1\nkind: InitConfig\ndeckhouse: {imagesRepo: x}\n", []string{ssh},
			`c.yml: document 2 (InitConfig), line 8: kind: unknown kind "InitConfig"; did you mean "InitConfiguration"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := LoadOptions{ConfigPaths: []string{writeFile(t, "c.yml", tc.config)}, ConnectionConfigPaths: tc.conn, LookupEnv: env, Require: bootstrap}
			_, ps := loadProblems(t, opts)
			got := strings.ReplaceAll(ps.Error(), opts.ConfigPaths[0], "c.yml")
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	_, err := Load(context.Background(), LoadOptions{Require: []Requirement{{Kind: "Nope", By: "x"}}})
	var ps Problems
	if err == nil || errors.As(err, &ps) {
		t.Errorf("an unknown required kind is a programming error, not a problem: %v", err)
	}
}
