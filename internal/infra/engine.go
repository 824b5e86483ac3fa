// Package infra drives the infrastructure engine, OpenTofu or Terraform, through terraform-exec:
// one working directory per step (the base infrastructure, each node), init → plan to a saved
// file → show -json → analysis → apply of that plan → outputs; destroy; import. The engine only
// ever installs providers from a local filesystem mirror (dhctl writes its CLI configuration), and
// a step's state is saved to the cluster's state while apply runs, not only at the end.
package infra

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is which engine a binary is.
type Kind string

const (
	OpenTofu  Kind = "OpenTofu"
	Terraform Kind = "Terraform"
)

// Minimum versions: the oldest releases whose plan JSON and provider installation dhctl relies
// on (OpenTofu's first release; Terraform's last MPL release line).
func minimum(k Kind) [3]int {
	if k == OpenTofu {
		return [3]int{1, 6, 0}
	}
	return [3]int{1, 5, 0}
}

// Engine is a found and checked engine binary.
type Engine struct {
	Path    string
	Kind    Kind
	Version string // "1.10.6"
	// Source says where it was found: "--terraform-binary", "beside dhctl" or "PATH".
	Source string
}

func (e *Engine) String() string {
	return fmt.Sprintf("%s %s (%s, %s)", e.Kind, e.Version, e.Path, e.Source)
}

// FindOptions say where to look for the engine.
type FindOptions struct {
	// Binary is the flag's (or environment's) choice; "" = look beside dhctl, then on PATH.
	Binary string
	// ExeDir is the directory of the running dhctl ("" = do not look there): an installer image
	// or a release archive ships the engine next to it.
	ExeDir string
	// LookPath searches PATH (exec.LookPath when nil).
	LookPath func(file string) (string, error)
}

// names are the binaries looked for, OpenTofu first (what Deckhouse runs its layouts with).
func names() []string { return []string{"tofu", "terraform"} }

// versionTimeout bounds `<engine> version`: a binary that hangs is not an engine.
const versionTimeout = 30 * time.Second

// Find locates the engine (flag, else beside dhctl, else PATH) and checks its version against
// the minimum. The error says where it looked and what to do.
func Find(ctx context.Context, o FindOptions) (*Engine, error) {
	look := o.LookPath
	if look == nil {
		look = exec.LookPath
	}
	var path, source string
	switch {
	case o.Binary != "":
		p, err := o.Binary, error(nil)
		if !strings.ContainsRune(o.Binary, filepath.Separator) {
			p, err = look(o.Binary) // a bare name is looked up on PATH, as a shell would
		} else if fi, serr := os.Stat(p); serr != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			err = fmt.Errorf("not an executable file")
		}
		if err != nil {
			return nil, fmt.Errorf("--terraform-binary %s: %w (give the path of a tofu or terraform binary)", o.Binary, err)
		}
		path, source = p, "--terraform-binary"
	default:
		var tried []string
		if o.ExeDir != "" {
			for _, n := range names() {
				p := filepath.Join(o.ExeDir, n)
				tried = append(tried, p)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
					path, source = p, "beside dhctl"
					break
				}
			}
		}
		if path == "" {
			for _, n := range names() {
				tried = append(tried, n+" on PATH")
				if p, err := look(n); err == nil {
					path, source = p, "PATH"
					break
				}
			}
		}
		if path == "" {
			return nil, fmt.Errorf("no infrastructure engine found (looked for %s): install OpenTofu (tofu) or Terraform, or give one with --terraform-binary", strings.Join(tried, ", "))
		}
	}
	e := &Engine{Path: path, Source: source}
	if err := e.readVersion(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

var versionLine = regexp.MustCompile(`^(OpenTofu|Terraform) v(\d+)\.(\d+)\.(\d+)(\S*)`)

// readVersion runs `<engine> version` and checks the minimum.
func (e *Engine) readVersion(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Path, "version")
	// Only what dhctl chooses: no update check over the network, and no CLI configuration of the
	// operator's (a broken one makes even `version` complain).
	cmd.Env = []string{"CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE=" + os.DevNull, "HOME=" + os.TempDir(), "PATH=" + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s version did not answer within %v: is it an OpenTofu or Terraform binary?", e.Path, versionTimeout)
		}
		return fmt.Errorf("%s version: %w: %s", e.Path, err, strings.TrimSpace(lastLines(out.String(), 5)))
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	m := versionLine.FindStringSubmatch(strings.TrimSpace(first))
	if m == nil {
		return fmt.Errorf("%s is not OpenTofu or Terraform: `version` printed %q", e.Path, first)
	}
	e.Kind = Kind(m[1])
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[2+i])
	}
	e.Version = fmt.Sprintf("%d.%d.%d%s", v[0], v[1], v[2], m[5])
	if min := minimum(e.Kind); less(v, min) {
		return fmt.Errorf("%s %s at %s (%s) is older than %d.%d.%d, the oldest dhctl supports: install a newer one or give it with --terraform-binary",
			e.Kind, e.Version, e.Path, e.Source, min[0], min[1], min[2])
	}
	return nil
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
