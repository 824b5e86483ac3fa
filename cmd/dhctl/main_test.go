package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/internal/operations/bootstrap"
	"github.com/dhctl-dev/dhctl/internal/phase"
)

// runCLI runs one command line in-process with the given environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code = run(context.Background(), args, streams{In: strings.NewReader(""), Out: &out, Err: &errOut}, lookup)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "dhctl ") || !strings.Contains(out, "kubernetes: 1.33") || !strings.Contains(out, "infrastructure engine: ") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
	bins, err := artifacts.Build(context.Background(), artifacts.Options{}, artifacts.OpenTofu)
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ = runCLI(t, nil, "version", "--terraform-binary", bins["tofu"])
	if !strings.Contains(out, "infrastructure engine: OpenTofu 1.10.6 ("+bins["tofu"]+", --terraform-binary)") {
		t.Errorf("version with the built OpenTofu:\n%s", out)
	}
	_, out, _ = runCLI(t, nil, "version", "--terraform-binary", "/bin/true")
	if !strings.Contains(out, "is not OpenTofu or Terraform") {
		t.Errorf("version with /bin/true as the engine:\n%s", out)
	}
}

// converge of a cluster the state dir does not know says what to give, and exits 2.
func TestConvergeWithoutAClusterIsAUsageError(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "converge", "--state-dir", t.TempDir(), "--cluster-name", "nowhere")
	if code != 2 || out != "" || !strings.Contains(errOut, `records no bootstrapped cluster "nowhere"`) || !strings.Contains(errOut, "--kubeconfig") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestBadCommandLineIsAUsageError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"version", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"mirror", "pul"}, `unknown command "pul" for "dhctl mirror"`},
		{[]string{"version", "extra"}, `unknown command "extra" for "dhctl version"`},
		{[]string{"destroy", "--ssh-port", "twenty-two"}, `invalid argument "twenty-two"`},
	} {
		code, _, errOut := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestBadEnvironmentIsAUsageError(t *testing.T) {
	code, _, errOut := runCLI(t, map[string]string{"DHCTL_SSH_PORT": "abc"}, "destroy")
	if code != 2 || !strings.Contains(errOut, `DHCTL_SSH_PORT="abc"`) {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

func TestEnvironmentFillsUnsetFlagsOnly(t *testing.T) {
	opts := &globalOptions{}
	flags := pflag.NewFlagSet("t", pflag.ContinueOnError)
	addGlobalFlags(flags, opts)
	if err := flags.Parse([]string{"--ssh-user=alice", "--config=a.yml"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DHCTL_SSH_USER":   "bob",                // the flag wins
		"DHCTL_SSH_HOST":   "10.0.0.1, 10.0.0.2", // list: comma-separated
		"DHCTL_SSH_PORT":   "2222",
		"DHCTL_CONFIG":     "b.yml", // the flag wins, no merge
		"DHCTL_LOG_FORMAT": "json",
		"DHCTL_YES_I_AM_SANE_AND_I_UNDERSTAND_WHAT_I_AM_DOING": "true",
	}
	if err := applyEnv(flags, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if opts.SSH.User != "alice" {
		t.Errorf("ssh user %q, want the flag's alice", opts.SSH.User)
	}
	if strings.Join(opts.SSH.Hosts, "|") != "10.0.0.1|10.0.0.2" {
		t.Errorf("ssh hosts %q", opts.SSH.Hosts)
	}
	if opts.SSH.Port != 2222 || opts.LogFormat != "json" || !opts.Sane {
		t.Errorf("port %d, log format %q, sane %v", opts.SSH.Port, opts.LogFormat, opts.Sane)
	}
	if strings.Join(opts.ConfigPaths, "|") != "a.yml" {
		t.Errorf("config paths %q, want only the flag's a.yml", opts.ConfigPaths)
	}
}

func TestEveryFlagHasAnEnvironmentVariableInHelp(t *testing.T) {
	code, out, _ := runCLI(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "DHCTL_SSH_HOST") {
		t.Fatalf("help (code %d) does not explain the environment: %q", code, out)
	}
}

func TestShellCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := runCLI(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, "dhctl") {
			t.Errorf("completion %s: code %d, stderr %q", shell, code, errOut)
		}
	}
	// Cobra's hidden __complete command is what the scripts call: it must offer our commands.
	code, out, _ := runCLI(t, nil, "__complete", "bootstrap-phase", "")
	if code != 0 || !strings.Contains(out, "execute-bashible-bundle") || !strings.Contains(out, "abort") {
		t.Errorf("completion of bootstrap-phase: code %d, %q", code, out)
	}
}

// TestBinaryExitCodes checks the codes a real process returns, as scripts see them.
func TestBinaryExitCodes(t *testing.T) {
	bin := buildDhctl(t)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, 0},
		{[]string{"no-such-command"}, 2},
		{[]string{"converge", "--kubeconfig=/nonexistent/kubeconfig"}, 2},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "DHCTL_SSH_PORT=22")
		err := cmd.Run()
		code := 0
		if exitErr, ok := err.(*exec.ExitError); ok {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want {
			t.Errorf("dhctl %v: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}

func TestJSONLogFormatReportsTheErrorAsJSON(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "--log-format", "json", "config", "validate", "--config", "../../examples/broken/overlapping-cidrs.yml")
	var event struct {
		Level    string `json:"level"`
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(errOut), &event); err != nil {
		t.Fatalf("stderr is not one JSON object: %v\n%s", err, errOut)
	}
	if code != 2 || event.ExitCode != 2 || event.Level != "ERROR" || !strings.Contains(event.Error, "overlaps serviceSubnetCIDR") {
		t.Fatalf("code %d, event %+v", code, event)
	}
}

// Help, completion and the bootstrap-phase commands come from the bootstrap's phase tree, so a
// phase added to the tree shows in all of them.
func TestPhaseListsAndCompletionComeFromTheTree(t *testing.T) {
	infos, err := phase.List(bootstrap.Tree())
	if err != nil {
		t.Fatal(err)
	}
	code, help, _ := runCLI(t, nil, "bootstrap", "--help")
	if code != 0 {
		t.Fatalf("bootstrap --help: exit %d", code)
	}
	_, completion, _ := runCLI(t, nil, "__complete", "bootstrap", "--skip-phase", "")
	for _, in := range infos {
		if !strings.Contains(help, in.Path) || !strings.Contains(help, in.Title) {
			t.Errorf("bootstrap --help does not list %s (%s)", in.Path, in.Title)
		}
		if !strings.Contains(completion, in.Name+"\t") {
			t.Errorf("--skip-phase does not complete %s:\n%s", in.Name, completion)
		}
	}
	// A bootstrap-phase command lists (and completes) its own part of the tree only.
	_, help, _ = runCLI(t, nil, "bootstrap-phase", "install-deckhouse", "--help")
	_, completion, _ = runCLI(t, nil, "__complete", "bootstrap-phase", "install-deckhouse", "--only-phase", "")
	for _, want := range []string{"install/cni", "install/wait-platform"} {
		if !strings.Contains(help, want) {
			t.Errorf("install-deckhouse --help lacks %s:\n%s", want, help)
		}
	}
	if !strings.Contains(completion, "wait-platform\t") || strings.Contains(completion, "first-master") {
		t.Errorf("install-deckhouse --only-phase completes:\n%s", completion)
	}
	for _, c := range bootstrap.Commands() {
		code, _, _ := runCLI(t, nil, "bootstrap-phase", c.Use, "--help")
		if code != 0 {
			t.Errorf("bootstrap-phase %s --help: exit %d", c.Use, code)
		}
	}
	code, _, errOut := runCLI(t, nil, "bootstrap-phase", "install-deckhouse", "--only-phase", "first-master", "--config", "../../examples/static-cluster.yml")
	if code != 2 || !strings.Contains(errOut, "not a phase of bootstrap-phase install-deckhouse") {
		t.Errorf("--only-phase outside the command's phases: exit %d, %s", code, errOut)
	}
}
