// Package phase runs an operation as an ordered tree of phases: every operation (bootstrap,
// converge, destroy, ...) is a []Phase handed to Run.
//
// A phase is a small type with Name, Title and Run. Optional behaviour is found by interface:
//
//   - WithInputs: the phase declares what it computes from. After a successful run the runner
//     saves a checkpoint holding the sha256 of the inputs' canonical JSON; a later run skips the
//     phase when its checkpoint exists with the same digest, and re-runs it when the inputs
//     changed. A phase WITHOUT WithInputs runs every time (its checkpoint is still written, as a
//     record); a phase that must run only once whatever happens returns constant inputs
//     (e.g. struct{}{}). Inputs are hashed, never stored.
//   - Conditional: ShouldRun decides at run time (e.g. "already installed"); false skips it.
//   - DryRunner: with Options.DryRun the runner calls DryRun instead of Run (a phase without it
//     is reported as dry-run without being called). Dry runs write no checkpoints.
//   - Group: a phase with children. The runner calls the group's Run first, as set-up shared by the
//     children (a no-op for most groups, see NewGroup), then runs each child itself, with the same
//     rules (flags, checkpoints, conditions). A group never runs its children on its own, and has no
//     checkpoint: resuming is decided leaf by leaf.
//
// Phase names are kebab-case, unique in the whole tree, and a phase's path joins the names from
// the root: "bootstrap/install/cni". --skip-phase and --only-phase take names or paths. Skipping a
// group skips its subtree; selecting a group with --only-phase selects its subtree, and selecting a
// phase inside a group enters the group (its set-up runs) but skips the group's other children.
// A phase named explicitly in --only-phase runs even when its checkpoint says it is done (the
// user asked for it); its subtree, when it is a group, resumes as usual.
//
// Checkpoints: before a phase runs, its old checkpoint is removed; after it succeeds, the new one
// is saved. A run killed at any instant therefore leaves no checkpoint for the interrupted phase
// (nor a stale one from older inputs), and the next run redoes it.
//
// Errors from Run are wrapped once, by the innermost phase: "phase install/cni: <cause>", with
// errors.Is/As reaching the cause. A cancelled context stops the run before the next phase; the
// error then wraps context.Canceled and the context's cause (e.g. exitcode.Aborted on SIGINT).
package phase

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

// Phase is one step of an operation.
type Phase interface {
	// Name is the kebab-case id used by --skip-phase/--only-phase and `bootstrap-phase <name>`.
	Name() string
	// Title is the human title shown in the phase tree ("Install CNI").
	Title() string
	Run(ctx context.Context) error
}

// WithInputs lets a phase be skipped on re-runs while its inputs are unchanged (see package doc).
// The value must marshal to JSON deterministically (maps are fine: keys are sorted).
type WithInputs interface {
	Inputs() (any, error)
}

// Conditional decides at run time whether a phase is needed; reason is shown when it is not.
type Conditional interface {
	ShouldRun(ctx context.Context) (run bool, reason string, err error)
}

// DryRunner previews what Run would do, changing nothing.
type DryRunner interface {
	DryRun(ctx context.Context) error
}

// Group is a phase with children, run by the runner after the group's own Run (set-up).
type Group interface {
	Phase
	Phases() []Phase
}

// Concurrent is a Group whose children run at the same time (see NewConcurrentGroup).
type Concurrent interface {
	Group
	Concurrent() bool
}

// Status is the outcome of one phase.
type Status string

// Statuses of PhaseResult and Event.
const (
	StatusRan               Status = "ran"
	StatusSkippedCheckpoint Status = "skipped-checkpoint"
	StatusSkippedFlag       Status = "skipped-flag"
	StatusSkippedCondition  Status = "skipped-condition"
	StatusDryRun            Status = "dry-run"
	StatusFailed            Status = "failed"
	// StatusInterrupted: the operator stopped the run (SIGINT/SIGTERM) while the phase ran.
	StatusInterrupted Status = "interrupted"
)

// Event kinds.
const (
	EventStart = "phase-start"
	EventEnd   = "phase-end"  // Status is ran, dry-run, failed or interrupted
	EventSkip  = "phase-skip" // Status is one of the skipped-* statuses; Reason says why
)

// Event is what the runner reports while it works, for the output (see LogSink).
type Event struct {
	Time     time.Time
	Kind     string // EventStart, EventEnd, EventSkip
	Phase    string // path, e.g. "bootstrap/install/cni"
	Depth    int    // 0 for top-level phases
	Group    bool   // the phase is a Group
	Title    string
	Duration time.Duration // on EventEnd
	Status   string
	Err      string
	Reason   string
}

// Sink receives events. Emit is called one event at a time; the events of a phase come in order
// (start, then end), those of concurrent phases interleave.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }

// Checkpoint records that a phase finished, and from which inputs.
type Checkpoint struct {
	Phase        string        `json:"phase"`        // path
	InputsDigest string        `json:"inputsDigest"` // "sha256:<hex>", "" for a phase without inputs
	Finished     time.Time     `json:"finished"`
	Duration     time.Duration `json:"duration"`
}

// CheckpointStore keeps checkpoints by phase path. Load returns (nil, nil) when there is none.
type CheckpointStore interface {
	Load(name string) (*Checkpoint, error)
	Save(c Checkpoint) error
	Reset(name string) error
}

// Options control a run.
type Options struct {
	// Skip and Only hold phase names or paths (--skip-phase, --only-phase). Skip wins over Only.
	Skip, Only []string
	// DryRun calls DryRun instead of Run and writes no checkpoints.
	DryRun bool
	// Checkpoints, if set, enables resuming: see the package doc.
	Checkpoints CheckpointStore
	// Events receives progress events; nil discards them.
	Events Sink
	// Clock is time.Now unless set (tests).
	Clock func() time.Time
}

// PhaseResult is the outcome of one phase, in tree order in Result.Phases.
type PhaseResult struct {
	Path     string // "bootstrap/install/cni"
	Name     string // "cni"
	Title    string
	Status   Status
	Duration time.Duration
	Reason   string // why it was skipped
	Err      error  // for StatusFailed
}

// Result lists what happened to every phase the run reached (phases after a failure are absent).
type Result struct {
	Phases []PhaseResult
}

// Get returns the result of the phase with the given path.
func (r Result) Get(path string) (PhaseResult, bool) {
	for _, p := range r.Phases {
		if p.Path == path {
			return p, true
		}
	}
	return PhaseResult{}, false
}

// Error is an error from a phase, naming it by path.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return "phase " + e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

var phaseName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Info describes a phase of a tree, for listings (--help, `phases` commands).
type Info struct {
	Path, Name, Title string
	Depth             int
	Group             bool
}

// List returns every phase of the tree in order, after checking the tree (see Run).
func List(phases []Phase) ([]Info, error) {
	var infos []Info
	seen := map[string]string{}
	var walk func(ps []Phase, parent string, depth int) error
	walk = func(ps []Phase, parent string, depth int) error {
		for i, p := range ps {
			if p == nil {
				return fmt.Errorf("phase tree: entry %d under %q is nil", i, parent)
			}
			name := p.Name()
			if !phaseName.MatchString(name) {
				return fmt.Errorf("phase tree: name %q under %q is not kebab-case (a-z, 0-9, single dashes)", name, parent)
			}
			path := joinPath(parent, name)
			if other, dup := seen[name]; dup {
				return fmt.Errorf("phase tree: name %q is used twice (%s and %s): names must be unique so that --skip-phase/--only-phase are unambiguous", name, other, path)
			}
			seen[name] = path
			g, isGroup := p.(Group)
			infos = append(infos, Info{Path: path, Name: name, Title: title(p), Depth: depth, Group: isGroup})
			if isGroup {
				if err := walk(g.Phases(), path, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(phases, "", 0); err != nil {
		return nil, err
	}
	return infos, nil
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

func title(p Phase) string {
	if t := p.Title(); t != "" {
		return t
	}
	return p.Name()
}

// Run runs phases in order, stopping at the first failure. It returns what happened to each
// phase it reached, and the first error (a *Error naming the phase). Unknown names in Skip or Only
// give a usage error listing the valid names, before anything runs.
func Run(ctx context.Context, phases []Phase, opts Options) (Result, error) {
	infos, err := List(phases)
	if err != nil {
		return Result{}, err
	}
	r := &runner{opts: opts, skip: map[string]bool{}, only: map[string]bool{}}
	if r.opts.Clock == nil {
		r.opts.Clock = time.Now
	}
	if r.opts.Events == nil {
		r.opts.Events = SinkFunc(func(Event) {})
	}
	if err := resolveNames("--skip-phase", opts.Skip, infos, r.skip); err != nil {
		return Result{}, err
	}
	if err := resolveNames("--only-phase", opts.Only, infos, r.only); err != nil {
		return Result{}, err
	}
	err = r.runList(ctx, phases, "", 0, len(r.only) == 0)
	return Result{Phases: r.results}, err
}

// resolveNames maps names or paths to paths, rejecting unknown ones.
func resolveNames(flag string, names []string, infos []Info, into map[string]bool) error {
	for _, n := range names {
		found := false
		for _, in := range infos {
			if n == in.Name || n == in.Path {
				into[in.Path] = true
				found = true
				break
			}
		}
		if !found {
			valid := make([]string, len(infos))
			for i, in := range infos {
				valid[i] = in.Name
			}
			return exitcode.Usage(fmt.Errorf("%s: unknown phase %q; valid phases: %s", flag, n, strings.Join(valid, ", ")))
		}
	}
	return nil
}

type runner struct {
	opts       Options
	skip, only map[string]bool

	mu      sync.Mutex // results and Events, for concurrent groups
	results []PhaseResult
}

// emit sends one event (serialised).
func (r *runner) emit(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opts.Events.Emit(ev)
}

// record appends a result and returns its index.
func (r *runner) record(res PhaseResult) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
	return len(r.results) - 1
}

// runChildren runs a group's children: in order, or all at once for a concurrent group (never
// in a dry run, whose preview reads in order).
func (r *runner) runChildren(ctx context.Context, g Group, path string, depth int, selected bool) error {
	if c, ok := g.(Concurrent); !ok || !c.Concurrent() || r.opts.DryRun {
		return r.runList(ctx, g.Phases(), path, depth+1, selected)
	}
	children := g.Phases()
	errs := make([]error, len(children))
	var wg sync.WaitGroup
	for i, p := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.runOne(ctx, p, joinPath(path, p.Name()), depth+1, selected)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) runList(ctx context.Context, phases []Phase, parent string, depth int, selected bool) error {
	for _, p := range phases {
		if err := r.runOne(ctx, p, joinPath(parent, p.Name()), depth, selected); err != nil {
			return err
		}
	}
	return nil
}

// runOne runs one phase (and a group's subtree). selected is true when the phase is selected by
// --only-phase through an ancestor, or when there is no --only-phase.
func (r *runner) runOne(ctx context.Context, p Phase, path string, depth int, selected bool) error {
	g, isGroup := p.(Group)
	res := PhaseResult{Path: path, Name: p.Name(), Title: title(p)}
	ev := Event{Phase: path, Depth: depth, Group: isGroup, Title: res.Title}

	selected = selected || r.only[path]
	switch {
	case r.skip[path]:
		return r.skipped(res, ev, StatusSkippedFlag, "--skip-phase")
	case !selected && !r.onlyBelow(path):
		return r.skipped(res, ev, StatusSkippedFlag, "not selected by --only-phase")
	}
	if ctx.Err() != nil {
		return &Error{Path: path, Err: interrupted(ctx, errors.New("not started"))}
	}

	// Resume: a leaf whose inputs match its checkpoint is done.
	var digest string
	if in, ok := p.(WithInputs); ok && !isGroup {
		var err error
		if digest, err = inputsDigest(in); err != nil {
			return r.failed(res, ev, r.opts.Clock(), &Error{Path: path, Err: err})
		}
		// A phase named explicitly in --only-phase runs even if done: the user asked for it.
		if r.opts.Checkpoints != nil && !r.only[path] {
			cp, err := r.opts.Checkpoints.Load(path)
			if err != nil {
				return r.failed(res, ev, r.opts.Clock(), &Error{Path: path, Err: err})
			}
			if cp != nil && cp.InputsDigest == digest {
				reason := "done in an earlier run (" + cp.Finished.UTC().Format(time.RFC3339) + ")"
				return r.skipped(res, ev, StatusSkippedCheckpoint, reason)
			}
		}
	}
	if c, ok := p.(Conditional); ok {
		run, reason, err := c.ShouldRun(ctx)
		if err != nil {
			return r.failed(res, ev, r.opts.Clock(), &Error{Path: path, Err: interrupted(ctx, fmt.Errorf("deciding whether to run: %w", err))})
		}
		if !run {
			if reason == "" {
				reason = "not needed"
			}
			return r.skipped(res, ev, StatusSkippedCondition, reason)
		}
	}

	start := r.opts.Clock()
	startEv := ev
	startEv.Time, startEv.Kind = start, EventStart
	r.emit(startEv)
	idx := r.record(res) // keeps tree order; filled in below

	if r.opts.DryRun {
		if d, ok := p.(DryRunner); ok {
			if err := call(ctx, d.DryRun); err != nil {
				return r.finish(idx, ev, start, &Error{Path: path, Err: err})
			}
		} else if !isGroup {
			r.results[idx].Reason = "no preview available: would run"
			ev.Reason = r.results[idx].Reason
		}
		if isGroup {
			if err := r.runChildren(ctx, g, path, depth, selected); err != nil {
				return r.finish(idx, ev, start, err)
			}
		}
		return r.finish(idx, ev, start, nil)
	}

	if r.opts.Checkpoints != nil && !isGroup {
		// Forget the old checkpoint first: if we are killed mid-phase, nothing may claim it is done.
		if err := r.opts.Checkpoints.Reset(path); err != nil {
			return r.finish(idx, ev, start, &Error{Path: path, Err: err})
		}
	}
	if err := call(ctx, p.Run); err != nil {
		return r.finish(idx, ev, start, &Error{Path: path, Err: err})
	}
	if isGroup {
		return r.finish(idx, ev, start, r.runChildren(ctx, g, path, depth, selected))
	}
	if r.opts.Checkpoints != nil {
		now := r.opts.Clock()
		cp := Checkpoint{Phase: path, InputsDigest: digest, Finished: now, Duration: now.Sub(start)}
		if err := r.opts.Checkpoints.Save(cp); err != nil {
			return r.finish(idx, ev, start, &Error{Path: path, Err: err})
		}
	}
	return r.finish(idx, ev, start, nil)
}

// onlyBelow reports whether --only-phase selects a phase strictly below path.
func (r *runner) onlyBelow(path string) bool {
	for p := range r.only {
		if strings.HasPrefix(p, path+"/") {
			return true
		}
	}
	return false
}

func (r *runner) skipped(res PhaseResult, ev Event, status Status, reason string) error {
	res.Status, res.Reason = status, reason
	r.record(res)
	ev.Time, ev.Kind, ev.Status, ev.Reason = r.opts.Clock(), EventSkip, string(status), reason
	r.emit(ev)
	return nil
}

// failed records a phase that failed before it started (inputs, checkpoint, condition). It still
// emits a start event, so that consumers always see start/end pairs.
func (r *runner) failed(res PhaseResult, ev Event, now time.Time, err error) error {
	startEv := ev
	startEv.Time, startEv.Kind = now, EventStart
	r.emit(startEv)
	return r.finish(r.record(res), ev, now, err)
}

// finish completes results[idx] and emits the end event. err is returned unchanged.
func (r *runner) finish(idx int, ev Event, start time.Time, err error) error {
	now := r.opts.Clock()
	r.mu.Lock()
	res := &r.results[idx]
	res.Duration = now.Sub(start)
	switch {
	case err != nil && exitcode.IsAborted(err):
		res.Status, res.Err = StatusInterrupted, err
		ev.Err = err.Error()
	case err != nil:
		res.Status, res.Err = StatusFailed, err
		ev.Err = err.Error()
	case r.opts.DryRun:
		res.Status = StatusDryRun
	default:
		res.Status = StatusRan
	}
	ev.Time, ev.Kind, ev.Status, ev.Duration = now, EventEnd, string(res.Status), res.Duration
	r.mu.Unlock()
	r.emit(ev)
	return err
}

// call runs fn, turning a panic into an error (a bug in one phase must not skip the output and
// exit-code handling of the whole command) and noting an interruption by ctx.
func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	if err := fn(ctx); err != nil {
		return interrupted(ctx, err)
	}
	return nil
}

// interrupted makes sure an error that happened while ctx was cancelled wraps ctx.Err() and the
// cancellation cause (which carries exitcode.Aborted when the user pressed Ctrl-C).
func interrupted(ctx context.Context, err error) error {
	ctxErr := ctx.Err()
	if ctxErr == nil {
		return err
	}
	if !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return err
}
