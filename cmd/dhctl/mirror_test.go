package main

import (
	"strings"
	"testing"
)

func TestMirrorCommandLineMistakesAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mirror", "pull"}, "give the bundle directory"},
		{[]string{"mirror", "pull", "--images-bundle-chunk-size", "lots", "b"}, `--images-bundle-chunk-size: "lots" is not a size`},
		{[]string{"mirror", "pull", "--images-bundle-chunk-size", "10K", "b"}, "below 1M"},
		{[]string{"mirror", "pull", "--kubernetes-version", "1.20", "b"}, "--kubernetes-version 1.20: not supported by this dhctl; supported: 1.33, or all"},
		{[]string{"mirror", "pull", "--kubernetes-version", "1.33.2", "b"}, "--kubernetes-version 1.33.2: not supported"},
		{[]string{"mirror", "pull", "--terraform-provider", "hashicorp/aws", "b"}, "--terraform-provider hashicorp/aws: not in the version map (it has: hashicorp/vsphere, or all)"},
		{[]string{"mirror", "push", "b"}, "accepts 2 arg(s)"},
		{[]string{"mirror", "push", "b", "https://registry.example.com/dhctl"}, "without a scheme"},
		{[]string{"mirror", "push", "b", "registry.example.com"}, "give a path below the registry host, e.g. registry.example.com/dhctl"},
	} {
		code, out, errOut := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

func TestMirrorPushOfADirectoryThatIsNoBundle(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, nil, "mirror", "push", dir, "127.0.0.1:1/dhctl")
	if code != 1 || !strings.Contains(errOut, "is not a bundle: it has no dhctl-bundle.json") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

func TestParseChunkSize(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "2": 2 << 30, "1.5G": 3 << 29, "500M": 500 << 20, "2048K": 2 << 20, "1gb": 1 << 30} {
		got, err := parseChunkSize(in)
		if err != nil || got != want {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}
