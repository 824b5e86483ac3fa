package infra

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/dhctl-dev/dhctl/internal/atomicfile"
)

// StateStore keeps each step's Terraform state (clusterstate.Local is one): the copy that
// counts, written atomically; the working directory's is a scratch copy.
type StateStore interface {
	TerraformState(step string) ([]byte, error)
	SaveTerraformState(step string, data []byte) error
	RemoveTerraformState(step string) error
}

// Options configure a Runner.
type Options struct {
	Engine *Engine
	// PluginDir is the provider filesystem mirror; Sources are the providers the layouts use
	// ("hashicorp/vsphere"), which alone may be installed from it.
	PluginDir string
	Sources   []string
	// WorkRoot holds one working directory per step (0700; they hold variables with secrets).
	WorkRoot string
	States   StateStore
	Log      *slog.Logger
	// InterruptGrace is how long the engine may take to save its state and exit after an
	// interrupt (SIGINT on cancellation) before it is killed; 0 = DefaultInterruptGrace.
	InterruptGrace time.Duration
	// SaveEvery is how often the working directory's state is checked and saved while the engine
	// runs; 0 = DefaultSaveEvery.
	SaveEvery time.Duration
}

// Defaults of Options.
const (
	DefaultInterruptGrace = 2 * time.Minute
	DefaultSaveEvery      = 200 * time.Millisecond
)

// Runner runs steps. Safe for concurrent use on different steps.
type Runner struct{ o Options }

// NewRunner checks the options: the engine, the mirror and its providers.
func NewRunner(o Options) (*Runner, error) {
	if o.Engine == nil || o.States == nil || o.WorkRoot == "" {
		return nil, errors.New("infra: Engine, States and WorkRoot are required")
	}
	if err := checkMirror(o.PluginDir, o.Sources); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(o.PluginDir)
	if err != nil {
		return nil, err
	}
	o.PluginDir = abs
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.InterruptGrace <= 0 {
		o.InterruptGrace = DefaultInterruptGrace
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = DefaultSaveEvery
	}
	return &Runner{o: o}, nil
}

// Step is one root module run in its own working directory.
type Step struct {
	// Name is "base-infrastructure" or a node's name: the key of its state.
	Name string
	// Module holds the root module's files (e.g. terraform/vsphere/standard/master-node).
	Module fs.FS
	// Vars are the module's input variables, written as a JSON tfvars file (0600).
	Vars map[string]any
}

const (
	varsFile  = "dhctl.auto.tfvars.json"
	planFile  = "dhctl.tfplan"
	stateFile = "terraform.tfstate"
	cliFile   = ".dhctl-cli.tfrc"
)

// workspace is a prepared working directory and the engine bound to it.
type workspace struct {
	r    *Runner
	step Step
	dir  string
	tf   *tfexec.Terraform
	out  *lineLogger
}

// prepare lays out the working directory: the module, the variables, the CLI configuration and
// the step's state (the stored one, unless the directory holds a newer one of the same lineage,
// which a kill between the engine's write and dhctl's copy leaves: that one is saved first).
func (r *Runner) prepare(step Step) (*workspace, error) {
	dir := filepath.Join(r.o.WorkRoot, step.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("step %s: %w", step.Name, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	// The module's files replace the old ones; .terraform (installed providers) and the state stay.
	err := fs.WalkDir(step.Module, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(step.Module, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		return atomicfile.Write(target, data, 0o600)
	})
	if err != nil {
		return nil, fmt.Errorf("step %s: copying the module: %w", step.Name, err)
	}
	vars, err := json.MarshalIndent(step.Vars, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("step %s: variables: %w", step.Name, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, varsFile), vars, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, cliFile), []byte(cliConfig(r.o.PluginDir, r.o.Sources)), 0o600); err != nil {
		return nil, err
	}
	if err := r.reconcileState(step.Name, dir); err != nil {
		return nil, err
	}
	// A plan a run made and did not apply (it stopped, or refused it) goes: it holds secrets.
	if err := os.Remove(filepath.Join(dir, planFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	tf, err := tfexec.NewTerraform(dir, r.o.Engine.Path)
	if err != nil {
		return nil, err
	}
	if err := tf.SetEnv(engineEnv(dir)); err != nil {
		return nil, err
	}
	if err := tf.SetWaitDelay(r.o.InterruptGrace); err != nil {
		return nil, err
	}
	out := &lineLogger{log: r.o.Log, step: step.Name}
	tf.SetStdout(out)
	tf.SetStderr(out)
	return &workspace{r: r, step: step, dir: dir, tf: tf, out: out}, nil
}

// engineEnv is the engine's whole environment: no variable of the operator's reaches it (no
// TF_CLI_CONFIG_FILE pointing elsewhere, no TF_VAR_ overriding the step's variables, no proxy).
func engineEnv(dir string) map[string]string {
	env := map[string]string{
		"TF_CLI_CONFIG_FILE": filepath.Join(dir, cliFile),
		"CHECKPOINT_DISABLE": "1",
		"HOME":               dir,
	}
	if p := os.Getenv("PATH"); p != "" {
		env["PATH"] = p
	}
	return env
}

type stateHeader struct {
	Serial  int64  `json:"serial"`
	Lineage string `json:"lineage"`
}

func parseHeader(data []byte) (stateHeader, bool) {
	var h stateHeader
	if len(bytes.TrimSpace(data)) == 0 || json.Unmarshal(data, &h) != nil || h.Lineage == "" {
		return h, false
	}
	return h, true
}

func (r *Runner) reconcileState(step, dir string) error {
	stored, err := r.o.States.TerraformState(step)
	if err != nil {
		return err
	}
	local, _ := os.ReadFile(filepath.Join(dir, stateFile))
	sh, sok := parseHeader(stored)
	lh, lok := parseHeader(local)
	switch {
	case lok && (!sok || (lh.Lineage == sh.Lineage && lh.Serial > sh.Serial)):
		r.o.Log.Debug("terraform state: the working directory's is newer, saving it", "step", step, "serial", lh.Serial)
		return r.o.States.SaveTerraformState(step, local)
	case sok:
		return atomicfile.Write(filepath.Join(dir, stateFile), stored, 0o600)
	default:
		// No state anywhere (or only a torn one): the step starts from nothing, and whatever it
		// made before is for the provider's recovery to find.
		if err := os.Remove(filepath.Join(dir, stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
}

// init initialises the working directory, unless it already was for the same module, CLI
// configuration and engine (a plan and its destroy in one run need one init, not two).
func (w *workspace) init(ctx context.Context) error {
	mark := filepath.Join(w.dir, ".terraform", "dhctl-init.sum")
	sum, err := w.initInputs()
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(mark); err == nil && string(old) == sum {
		if _, err := os.Stat(filepath.Join(w.dir, ".terraform.lock.hcl")); err == nil {
			return nil
		}
	}
	if err := w.tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		return w.fail("init", err)
	}
	return atomicfile.Write(mark, []byte(sum), 0o600)
}

// initInputs digests what init depends on: the module's files, the CLI configuration and the
// engine binary.
func (w *workspace) initInputs() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s\n", w.r.o.Engine.Path, w.r.o.Engine.Version, cliConfig(w.r.o.PluginDir, w.r.o.Sources))
	err := fs.WalkDir(w.step.Module, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(w.step.Module, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil)), err
}

func (w *workspace) fail(what string, err error) error {
	return fmt.Errorf("step %s: %s %s: %w\n%s", w.step.Name, w.r.o.Engine.Kind, what, err, w.out.tail())
}

// watchState saves the working directory's state every time it changes until stop is closed,
// then once more. The engine writes it when it persists (periodically, at a stop, at the end);
// a half-written file is not valid JSON and waits for the next look.
func (w *workspace) watchState(stop <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		var last [32]byte
		save := func() error {
			data, err := os.ReadFile(filepath.Join(w.dir, stateFile))
			if err != nil {
				return nil
			}
			if _, ok := parseHeader(data); !ok {
				return nil
			}
			sum := sha256.Sum256(data)
			if sum == last {
				return nil
			}
			if err := w.r.o.States.SaveTerraformState(w.step.Name, data); err != nil {
				return err
			}
			last = sum
			return nil
		}
		t := time.NewTicker(w.r.o.SaveEvery)
		defer t.Stop()
		var firstErr error
		for {
			select {
			case <-stop:
				err := save()
				done <- errors.Join(firstErr, err)
				return
			case <-t.C:
				if err := save(); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}
	}()
	return done
}

// withStateSaved runs fn (an engine command that changes the state) while watching the state.
func (w *workspace) withStateSaved(fn func() error) error {
	stop := make(chan struct{})
	saved := w.watchState(stop)
	err := fn()
	close(stop)
	if serr := <-saved; serr != nil {
		return errors.Join(err, fmt.Errorf("step %s: saving the terraform state: %w", w.step.Name, serr))
	}
	return err
}

// Plan prepares the step, initialises it and plans it to a saved file, analysed.
func (r *Runner) Plan(ctx context.Context, step Step, destructiveTypes []string) (*Plan, error) {
	w, err := r.prepare(step)
	if err != nil {
		return nil, err
	}
	if err := w.init(ctx); err != nil {
		return nil, err
	}
	p := filepath.Join(w.dir, planFile)
	ui := &planUI{log: w.out}
	_, err = w.tf.PlanJSON(ctx, ui, tfexec.Out(p))
	w.tf.SetStdout(w.out) // PlanJSON leaves its writer in place
	ui.flush()
	if err != nil {
		if len(ui.errors) > 0 {
			err = fmt.Errorf("%s (%w)", strings.Join(ui.errors, "; "), err)
		}
		return nil, w.fail("plan", err)
	}
	plan, ok := analyseUI(step.Name, ui.changes, destructiveTypes)
	if !ok {
		tp, err := quiet(w, func() (*tfjson.Plan, error) { return w.tf.ShowPlanFile(ctx, p) })
		if err != nil {
			return nil, w.fail("show", err)
		}
		plan = analyse(step.Name, tp, destructiveTypes)
	}
	plan.file, plan.ws = p, w
	return plan, nil
}

// Apply applies exactly the plan Plan made (a destructive one only when the caller decided so)
// and returns the step's outputs. The state is saved while the engine runs.
func (r *Runner) Apply(ctx context.Context, plan *Plan) (Outputs, error) {
	w := plan.ws
	if w == nil {
		return nil, errors.New("infra: Apply needs a plan from Plan")
	}
	err := w.withStateSaved(func() error { return w.tf.Apply(ctx, tfexec.DirOrPlan(plan.file)) })
	// A saved plan holds every variable in clear, the provider's password among them: it lives
	// only between its plan and its apply.
	if rerr := os.Remove(plan.file); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, w.fail("apply", err)
	}
	return w.outputs(ctx)
}

// Outputs are a step's outputs, as JSON values.
type Outputs map[string]json.RawMessage

// String decodes a string output.
func (o Outputs) String(name string) (string, error) {
	raw, ok := o[name]
	if !ok {
		return "", fmt.Errorf("no output %q", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("output %q is not a string: %s", name, raw)
	}
	return s, nil
}

// StateOutputs are the outputs a saved state holds (the engine's state format: each output's
// value beside its type), as Output would report them after that state's apply: what a state
// kept in the cluster says about its machine without running the engine.
func StateOutputs(state []byte) (Outputs, error) {
	var s struct {
		Outputs map[string]struct {
			Value json.RawMessage `json:"value"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(state, &s); err != nil {
		return nil, fmt.Errorf("not an engine state: %w", err)
	}
	out := Outputs{}
	for name, o := range s.Outputs {
		out[name] = o.Value
	}
	return out, nil
}

// quiet runs a command whose output is data, not progress: the plan JSON holds every variable
// (the provider's password among them) and must not reach the log.
func quiet[T any](w *workspace, fn func() (T, error)) (T, error) {
	w.tf.SetStdout(io.Discard)
	defer w.tf.SetStdout(w.out)
	return fn()
}

func (w *workspace) outputs(ctx context.Context) (Outputs, error) {
	meta, err := quiet(w, func() (map[string]tfexec.OutputMeta, error) { return w.tf.Output(ctx) })
	if err != nil {
		return nil, w.fail("output", err)
	}
	out := Outputs{}
	for k, m := range meta {
		out[k] = m.Value
	}
	return out, nil
}

// Output reads the outputs of a step that was applied before (from its state).
func (r *Runner) Output(ctx context.Context, step Step) (Outputs, error) {
	w, err := r.prepare(step)
	if err != nil {
		return nil, err
	}
	if err := w.init(ctx); err != nil {
		return nil, err
	}
	return w.outputs(ctx)
}

// Import adopts an existing object into the step's state (recovery of what a killed apply made
// but never saved).
func (r *Runner) Import(ctx context.Context, step Step, address, id string) error {
	w, err := r.prepare(step)
	if err != nil {
		return err
	}
	if err := w.init(ctx); err != nil {
		return err
	}
	if err := w.withStateSaved(func() error { return w.tf.Import(ctx, address, id) }); err != nil {
		return w.fail("import "+address, err)
	}
	return nil
}

// Destroy removes everything of the step, then its state.
func (r *Runner) Destroy(ctx context.Context, step Step) error {
	w, err := r.prepare(step)
	if err != nil {
		return err
	}
	if err := w.init(ctx); err != nil {
		return err
	}
	if err := w.withStateSaved(func() error { return w.tf.Destroy(ctx) }); err != nil {
		return w.fail("destroy", err)
	}
	if err := r.o.States.RemoveTerraformState(step.Name); err != nil {
		return err
	}
	return os.RemoveAll(w.dir)
}

// lineLogger sends the engine's output to the debug log, a line at a time, and keeps the last
// lines for errors.
type lineLogger struct {
	log  *slog.Logger
	step string
	mu   sync.Mutex
	buf  []byte
	last []string
}

const (
	tailLines = 20
	maxLine   = 400
)

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	sc := bufio.NewScanner(bytes.NewReader(l.buf))
	consumed := 0
	for sc.Scan() {
		line := sc.Text()
		if consumed+len(line)+1 > len(l.buf) { // no newline yet: keep it for the next write
			break
		}
		consumed += len(line) + 1
		if len(line) > maxLine {
			line = line[:maxLine] + "…"
		}
		l.log.Debug("engine", "step", l.step, "line", line)
		l.last = append(l.last, line)
		if len(l.last) > tailLines {
			l.last = l.last[len(l.last)-tailLines:]
		}
	}
	l.buf = append(l.buf[:0], l.buf[consumed:]...)
	return len(p), nil
}

func (l *lineLogger) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) == 0 {
		return ""
	}
	var b bytes.Buffer
	b.WriteString("last lines of the engine's output:")
	for _, s := range l.last {
		b.WriteString("\n  " + s)
	}
	return b.String()
}

var _ io.Writer = (*lineLogger)(nil)
