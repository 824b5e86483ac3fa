package phase

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// recorder remembers which phase methods were called, in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, " ")
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
}

// Test phases: each optional interface gets its own type, since the runner finds them by type.
type leaf struct {
	name string
	rec  *recorder
	fn   func(ctx context.Context) error
}

func (l *leaf) Name() string  { return l.name }
func (l *leaf) Title() string { return "Title of " + l.name }
func (l *leaf) Run(ctx context.Context) error {
	l.rec.add(l.name)
	if l.fn != nil {
		return l.fn(ctx)
	}
	return nil
}

type inputsLeaf struct {
	leaf
	inputs    any
	inputsErr error
}

func (l *inputsLeaf) Inputs() (any, error) { return l.inputs, l.inputsErr }

type condLeaf struct {
	leaf
	run    bool
	reason string
	err    error
}

func (l *condLeaf) ShouldRun(context.Context) (bool, string, error) {
	l.rec.add("should-run:" + l.name)
	return l.run, l.reason, l.err
}

type dryLeaf struct{ leaf }

func (l *dryLeaf) DryRun(context.Context) error {
	l.rec.add("dry:" + l.name)
	return nil
}

// setupGroup is a group whose own Run (set-up) is recorded, without DryRun.
type setupGroup struct {
	leaf
	children []Phase
}

func (g *setupGroup) Phases() []Phase { return g.children }

// fakeClock advances 100ms at every reading, so durations are deterministic.
func fakeClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(100 * time.Millisecond)
		return t
	}
}

// eventLog collects events as "kind path status" strings.
type eventLog struct{ events []Event }

func (e *eventLog) Emit(ev Event) { e.events = append(e.events, ev) }

func (e *eventLog) lines() []string {
	var out []string
	for _, ev := range e.events {
		s := fmt.Sprintf("%s %s d%d", ev.Kind, ev.Phase, ev.Depth)
		if ev.Status != "" {
			s += " " + ev.Status
		}
		out = append(out, s)
	}
	return out
}

func openStore(t *testing.T) (*state.Dir, *DirCheckpoints) {
	t.Helper()
	d, err := state.Open(context.Background(), t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, NewDirCheckpoints(d)
}

func statuses(res Result) string {
	var parts []string
	for _, p := range res.Phases {
		parts = append(parts, p.Path+"="+string(p.Status))
	}
	return strings.Join(parts, " ")
}

// sampleTree: prepare, install{cni, wait{api}}, finish; all leaves with inputs.
func sampleTree(rec *recorder, inputs map[string]any) []Phase {
	in := func(name string) *inputsLeaf {
		v, ok := inputs[name]
		if !ok {
			v = "v1"
		}
		return &inputsLeaf{leaf: leaf{name: name, rec: rec}, inputs: v}
	}
	return []Phase{
		in("prepare"),
		&setupGroup{leaf: leaf{name: "install", rec: rec}, children: []Phase{
			in("cni"),
			NewGroup("wait", "Wait", in("api")),
		}},
		in("finish"),
	}
}

func TestRunNestedOrderEventsAndDurations(t *testing.T) {
	rec := &recorder{}
	events := &eventLog{}
	res, err := Run(context.Background(), sampleTree(rec, nil), Options{Events: events, Clock: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.String(); got != "prepare install cni api finish" {
		t.Fatalf("calls: %s", got)
	}
	want := "prepare=ran install=ran install/cni=ran install/wait=ran install/wait/api=ran finish=ran"
	if got := statuses(res); got != want {
		t.Fatalf("results:\n got %s\nwant %s", got, want)
	}
	wantEvents := []string{
		"phase-start prepare d0", "phase-end prepare d0 ran",
		"phase-start install d0",
		"phase-start install/cni d1", "phase-end install/cni d1 ran",
		"phase-start install/wait d1",
		"phase-start install/wait/api d2", "phase-end install/wait/api d2 ran",
		"phase-end install/wait d1 ran",
		"phase-end install d0 ran",
		"phase-start finish d0", "phase-end finish d0 ran",
	}
	if got := events.lines(); fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Fatalf("events:\n got %q\nwant %q", got, wantEvents)
	}
	for _, ev := range events.events {
		if ev.Kind == EventEnd && ev.Duration <= 0 {
			t.Errorf("%s: no duration", ev.Phase)
		}
		if ev.Phase == "install" && !ev.Group || ev.Phase == "install/cni" && ev.Group {
			t.Errorf("%s: Group = %v", ev.Phase, ev.Group)
		}
		if ev.Title == "" {
			t.Errorf("%s: empty title", ev.Phase)
		}
	}
	// A leaf reads the clock at start, at checkpoint time (none here) and at the end: 100ms apart.
	if p, _ := res.Get("prepare"); p.Duration != 100*time.Millisecond {
		t.Errorf("prepare duration %v", p.Duration)
	}
	install, _ := res.Get("install")
	cni, _ := res.Get("install/cni")
	if install.Duration <= cni.Duration {
		t.Errorf("a group's duration (%v) must cover its children (%v)", install.Duration, cni.Duration)
	}
}

func TestSkipAndOnly(t *testing.T) {
	tests := []struct {
		name       string
		skip, only []string
		calls      string
		statuses   string
	}{
		{name: "skip a leaf by name", skip: []string{"cni"}, calls: "prepare install api finish",
			statuses: "prepare=ran install=ran install/cni=skipped-flag install/wait=ran install/wait/api=ran finish=ran"},
		{name: "skip a leaf by path", skip: []string{"install/wait/api"}, calls: "prepare install cni finish",
			statuses: "prepare=ran install=ran install/cni=ran install/wait=ran install/wait/api=skipped-flag finish=ran"},
		{name: "skip a group skips its subtree", skip: []string{"install"}, calls: "prepare finish",
			statuses: "prepare=ran install=skipped-flag finish=ran"},
		{name: "only a leaf inside a group enters the group", only: []string{"api"}, calls: "install api",
			statuses: "prepare=skipped-flag install=ran install/cni=skipped-flag install/wait=ran install/wait/api=ran finish=skipped-flag"},
		{name: "only a group selects its subtree", only: []string{"install"}, calls: "install cni api",
			statuses: "prepare=skipped-flag install=ran install/cni=ran install/wait=ran install/wait/api=ran finish=skipped-flag"},
		{name: "only two phases", only: []string{"prepare", "finish"}, calls: "prepare finish",
			statuses: "prepare=ran install=skipped-flag finish=ran"},
		{name: "skip wins over only", only: []string{"install"}, skip: []string{"cni"}, calls: "install api",
			statuses: "prepare=skipped-flag install=ran install/cni=skipped-flag install/wait=ran install/wait/api=ran finish=skipped-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			events := &eventLog{}
			res, err := Run(context.Background(), sampleTree(rec, nil), Options{Skip: tt.skip, Only: tt.only, Events: events})
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.String(); got != tt.calls {
				t.Errorf("calls: got %q, want %q", got, tt.calls)
			}
			if got := statuses(res); got != tt.statuses {
				t.Errorf("statuses:\n got %s\nwant %s", got, tt.statuses)
			}
			for _, ev := range events.events {
				if ev.Kind == EventSkip && (ev.Reason == "" || ev.Status != string(StatusSkippedFlag)) {
					t.Errorf("skip event without reason/status: %+v", ev)
				}
			}
		})
	}
}

func TestUnknownPhaseNamesAreUsageErrors(t *testing.T) {
	rec := &recorder{}
	for _, opts := range []Options{{Skip: []string{"cnii"}}, {Only: []string{"install/nope"}}} {
		_, err := Run(context.Background(), sampleTree(rec, nil), opts)
		if err == nil {
			t.Fatal("unknown phase accepted")
		}
		msg := err.Error()
		for _, want := range []string{"unknown phase", "prepare, install, cni, wait, api, finish"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
		}
		if !strings.Contains(msg, "--skip-phase") && !strings.Contains(msg, "--only-phase") {
			t.Errorf("error %q does not name the flag", msg)
		}
		if exitcode.ExitCode(err) != exitcode.UsageError {
			t.Errorf("unknown phase must be a usage error (exit 2)")
		}
	}
	if rec.String() != "" {
		t.Fatalf("phases ran despite a bad flag: %s", rec)
	}
}

func TestInvalidTrees(t *testing.T) {
	rec := &recorder{}
	tests := map[string][]Phase{
		"not kebab-case": {&leaf{name: "Install_CNI", rec: rec}},
		"empty name":     {&leaf{name: "", rec: rec}},
		"duplicate name": {&leaf{name: "a", rec: rec}, NewGroup("g", "G", &leaf{name: "a", rec: rec})},
		"nil phase":      {NewGroup("g", "G", nil)},
	}
	for name, tree := range tests {
		if _, err := Run(context.Background(), tree, Options{}); err == nil || !strings.Contains(err.Error(), "phase tree") {
			t.Errorf("%s: want a phase tree error, got %v", name, err)
		}
	}
	if rec.String() != "" {
		t.Fatalf("an invalid tree ran phases: %s", rec)
	}
}

func TestConditional(t *testing.T) {
	rec := &recorder{}
	events := &eventLog{}
	boom := errors.New("cannot reach host")
	tree := []Phase{
		&condLeaf{leaf: leaf{name: "needed", rec: rec}, run: true},
		&condLeaf{leaf: leaf{name: "not-needed", rec: rec}, run: false, reason: "already installed"},
		&condLeaf{leaf: leaf{name: "broken", rec: rec}, err: boom},
		&leaf{name: "after", rec: rec},
	}
	res, err := Run(context.Background(), tree, Options{Events: events})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "phase broken: deciding whether to run: cannot reach host") {
		t.Fatalf("err = %v", err)
	}
	if got := rec.String(); got != "should-run:needed needed should-run:not-needed should-run:broken" {
		t.Fatalf("calls: %s", got)
	}
	if got := statuses(res); got != "needed=ran not-needed=skipped-condition broken=failed" {
		t.Fatalf("statuses: %s", got)
	}
	if p, _ := res.Get("not-needed"); p.Reason != "already installed" {
		t.Fatalf("reason: %q", p.Reason)
	}
	wantEvents := []string{"phase-start needed d0", "phase-end needed d0 ran", "phase-skip not-needed d0 skipped-condition", "phase-start broken d0", "phase-end broken d0 failed"}
	if got := events.lines(); fmt.Sprint(got) != fmt.Sprint(wantEvents) {
		t.Fatalf("events:\n got %q\nwant %q", got, wantEvents)
	}
	last := events.events[len(events.events)-1]
	if last.Kind != EventEnd || last.Status != "failed" || !strings.Contains(last.Err, "cannot reach host") {
		t.Fatalf("last event: %+v", last)
	}
}

func TestDryRun(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	tree := []Phase{
		&dryLeaf{leaf: leaf{name: "previewed", rec: rec}},
		&inputsLeaf{leaf: leaf{name: "plain", rec: rec}, inputs: 1},
		&setupGroup{leaf: leaf{name: "grp", rec: rec}, children: []Phase{&dryLeaf{leaf: leaf{name: "child", rec: rec}}}},
		&condLeaf{leaf: leaf{name: "cond", rec: rec}, run: false, reason: "nothing to do"},
	}
	res, err := Run(context.Background(), tree, Options{DryRun: true, Checkpoints: store})
	if err != nil {
		t.Fatal(err)
	}
	// No Run at all, not even a group's set-up; conditions are still asked (they only read).
	if got := rec.String(); got != "dry:previewed dry:child should-run:cond" {
		t.Fatalf("calls: %s", got)
	}
	if got := statuses(res); got != "previewed=dry-run plain=dry-run grp=dry-run grp/child=dry-run cond=skipped-condition" {
		t.Fatalf("statuses: %s", got)
	}
	if p, _ := res.Get("plain"); !strings.Contains(p.Reason, "would run") {
		t.Fatalf("a phase without DryRun should say it would run: %q", p.Reason)
	}
	if _, err := os.Stat(filepath.Join(d.Path(), "checkpoints")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dry run wrote checkpoints: %v", err)
	}
}

func TestCheckpointsResumeAndDigestChange(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	noInputs := &leaf{name: "always", rec: rec}
	run := func(inputs map[string]any) Result {
		t.Helper()
		rec.reset()
		tree := append(sampleTree(rec, inputs), noInputs)
		res, err := Run(context.Background(), tree, Options{Checkpoints: store, Clock: fakeClock()})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	run(nil)
	if got := rec.String(); got != "prepare install cni api finish always" {
		t.Fatalf("first run: %s", got)
	}
	data, err := d.ReadFile("checkpoints/install/wait/api.json")
	if err != nil {
		t.Fatalf("no checkpoint for a nested phase: %v", err)
	}
	cp, err := store.Load("install/wait/api")
	if err != nil || cp.Phase != "install/wait/api" || !strings.HasPrefix(cp.InputsDigest, "sha256:") || cp.Finished.IsZero() || cp.Duration <= 0 {
		t.Fatalf("checkpoint %+v (%v): %s", cp, err, data)
	}
	if _, err := d.ReadFile("checkpoints/install.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("groups must not have checkpoints: %v", err)
	}

	// Same inputs: every leaf with inputs is skipped; groups' set-up and input-less phases run.
	res := run(nil)
	if got := rec.String(); got != "install always" {
		t.Fatalf("second run calls: %s", got)
	}
	if p, _ := res.Get("install/cni"); p.Status != StatusSkippedCheckpoint || !strings.Contains(p.Reason, "earlier run") {
		t.Fatalf("cni: %+v", p)
	}

	// Changed inputs of one phase: only it re-runs.
	run(map[string]any{"cni": map[string]any{"plugin": "flannel", "mtu": 1450}})
	if got := rec.String(); got != "install cni always" {
		t.Fatalf("after changing cni's inputs: %s", got)
	}
	// Same inputs written differently (map built in another order, int vs float) still match.
	run(map[string]any{"cni": map[string]any{"mtu": 1450.0, "plugin": "flannel"}})
	if got := rec.String(); got != "install always" {
		t.Fatalf("equivalent inputs re-ran a phase: %s", got)
	}
	// Back to the first inputs: the checkpoint now holds the new digest, so cni runs again.
	run(nil)
	if got := rec.String(); got != "install cni always" {
		t.Fatalf("reverting inputs: %s", got)
	}
	// After ResetAll everything runs again.
	if err := store.ResetAll(); err != nil {
		t.Fatal(err)
	}
	run(nil)
	if got := rec.String(); got != "prepare install cni api finish always" {
		t.Fatalf("after ResetAll: %s", got)
	}
	// --only-phase naming a done phase runs it anyway.
	rec.reset()
	if _, err := Run(context.Background(), sampleTree(rec, nil), Options{Checkpoints: store, Only: []string{"cni"}}); err != nil {
		t.Fatal(err)
	}
	if got := rec.String(); got != "install cni" {
		t.Fatalf("--only-phase cni: %s", got)
	}
}

func TestInputsDigestIsCanonical(t *testing.T) {
	type S struct {
		B string `json:"b"`
		A int    `json:"a"`
	}
	d1, err := inputsDigest(&inputsLeaf{inputs: S{B: "x", A: 1}})
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := inputsDigest(&inputsLeaf{inputs: map[string]any{"a": 1, "b": "x"}})
	d3, _ := inputsDigest(&inputsLeaf{inputs: map[string]any{"a": 2, "b": "x"}})
	if d1 != d2 {
		t.Fatalf("struct and equivalent map differ: %s %s", d1, d2)
	}
	if d1 == d3 {
		t.Fatal("different inputs, same digest")
	}
	if _, err := inputsDigest(&inputsLeaf{inputs: make(chan int)}); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("unmarshalable inputs: %v", err)
	}
}

func TestFailureStopsRunAndLeavesNoCheckpoint(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	boom := &os.PathError{Op: "open", Path: "/etc/cni", Err: os.ErrPermission}
	fail := true
	cni := &inputsLeaf{leaf: leaf{name: "cni", rec: rec, fn: func(context.Context) error {
		if fail {
			return boom
		}
		return nil
	}}, inputs: "v1"}
	tree := func() []Phase {
		return []Phase{&inputsLeaf{leaf: leaf{name: "prepare", rec: rec}, inputs: 1},
			NewGroup("install", "Install", cni, &inputsLeaf{leaf: leaf{name: "api", rec: rec}, inputs: 1}),
			&leaf{name: "finish", rec: rec}}
	}
	// A checkpoint from an older run with other inputs must not survive the failed attempt.
	if err := store.Save(Checkpoint{Phase: "install/cni", InputsDigest: "sha256:old", Finished: time.Now()}); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), tree(), Options{Checkpoints: store})
	if err == nil || err.Error() != "phase install/cni: open /etc/cni: permission denied" {
		t.Fatalf("err = %v", err)
	}
	var pe *os.PathError
	var phaseErr *Error
	if !errors.Is(err, os.ErrPermission) || !errors.As(err, &pe) || !errors.As(err, &phaseErr) || phaseErr.Path != "install/cni" {
		t.Fatalf("error chain broken: %v", err)
	}
	if got := rec.String(); got != "prepare cni" {
		t.Fatalf("calls: %s", got)
	}
	if got := statuses(res); got != "prepare=ran install=failed install/cni=failed" {
		t.Fatalf("statuses: %s", got)
	}
	if g, _ := res.Get("install"); g.Err != err {
		t.Fatalf("group error must be the child's error, unwrapped once: %v", g.Err)
	}
	if _, err := d.ReadFile("checkpoints/install/cni.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed phase has a checkpoint: %v", err)
	}
	// The re-run resumes at the failed phase.
	fail = false
	rec.reset()
	if _, err := Run(context.Background(), tree(), Options{Checkpoints: store}); err != nil {
		t.Fatal(err)
	}
	if got := rec.String(); got != "cni api finish" {
		t.Fatalf("re-run calls: %s", got)
	}
}

func TestCancelBetweenPhases(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	tree := []Phase{
		&inputsLeaf{leaf: leaf{name: "first", rec: rec, fn: func(context.Context) error {
			cancel(exitcode.Aborted(errors.New("received interrupt")))
			return nil // finished its work before noticing
		}}, inputs: 1},
		&inputsLeaf{leaf: leaf{name: "second", rec: rec}, inputs: 1},
	}
	res, err := Run(ctx, tree, Options{Checkpoints: store})
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "phase second: not started") {
		t.Fatalf("err = %v", err)
	}
	if exitcode.ExitCode(err) != exitcode.AbortedByUser {
		t.Fatalf("the cancellation cause must reach the error: exit code %d for %v", exitcode.ExitCode(err), err)
	}
	if got := rec.String(); got != "first" {
		t.Fatalf("calls: %s", got)
	}
	if got := statuses(res); got != "first=ran" {
		t.Fatalf("statuses: %s", got)
	}
	if _, err := d.ReadFile("checkpoints/first.json"); err != nil {
		t.Fatalf("the finished phase must keep its checkpoint: %v", err)
	}
	if _, err := d.ReadFile("checkpoints/second.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unstarted phase has a checkpoint: %v", err)
	}
}

func TestCancelInsidePhase(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	for _, tc := range []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"returns ctx.Err()", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"returns its own error", func(ctx context.Context) error { <-ctx.Done(); return errors.New("ssh: connection closed") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			tree := []Phase{&inputsLeaf{leaf: leaf{name: "slow", rec: rec, fn: func(ctx context.Context) error {
				go cancel()
				return tc.fn(ctx)
			}}, inputs: 1}, &leaf{name: "next", rec: rec}}
			rec.reset()
			res, err := Run(ctx, tree, Options{Checkpoints: store})
			if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "phase slow: ") {
				t.Fatalf("err = %v", err)
			}
			if exitcode.ExitCode(err) != exitcode.Failed {
				t.Fatalf("a cancel without the Aborted cause is a failure, got exit %d", exitcode.ExitCode(err))
			}
			if got := statuses(res); got != "slow=failed" || rec.String() != "slow" {
				t.Fatalf("statuses %s, calls %s", got, rec)
			}
			if _, err := d.ReadFile("checkpoints/slow.json"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("interrupted phase has a checkpoint: %v", err)
			}
		})
	}
}

func TestPanicBecomesError(t *testing.T) {
	rec := &recorder{}
	tree := []Phase{&leaf{name: "buggy", rec: rec, fn: func(context.Context) error {
		var items []int
		_ = items[len(items)] // a genuine runtime panic, as a buggy phase would raise
		return nil
	}}}
	res, err := Run(context.Background(), tree, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "phase buggy: panic: runtime error: index out of range") {
		t.Fatalf("err = %v", err)
	}
	if got := statuses(res); got != "buggy=failed" {
		t.Fatalf("statuses: %s", got)
	}
}

func TestInputsErrorAndCorruptCheckpoint(t *testing.T) {
	d, store := openStore(t)
	rec := &recorder{}
	_, err := Run(context.Background(), []Phase{&inputsLeaf{leaf: leaf{name: "p", rec: rec}, inputsErr: errors.New("config missing")}}, Options{Checkpoints: store})
	if err == nil || err.Error() != "phase p: computing inputs: config missing" {
		t.Fatalf("err = %v", err)
	}
	if err := d.WriteFile("checkpoints/q.json", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), []Phase{&inputsLeaf{leaf: leaf{name: "q", rec: rec}, inputs: 1}}, Options{Checkpoints: store})
	if err == nil || !strings.Contains(err.Error(), "checkpoints/q.json is invalid") || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("err = %v", err)
	}
	if rec.String() != "" {
		t.Fatalf("phases ran: %s", rec)
	}
}

func TestListAndHelpers(t *testing.T) {
	rec := &recorder{}
	infos, err := List(sampleTree(rec, nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range infos {
		got = append(got, fmt.Sprintf("%s:%d:%v", in.Path, in.Depth, in.Group))
	}
	want := "prepare:0:false install:0:true install/cni:1:false install/wait:1:true install/wait/api:2:false finish:0:false"
	if strings.Join(got, " ") != want {
		t.Fatalf("List: %s", strings.Join(got, " "))
	}
	ran := false
	f := Func("say-hi", "", func(context.Context) error { ran = true; return nil })
	res, err := Run(context.Background(), []Phase{f}, Options{})
	if err != nil || !ran || res.Phases[0].Title != "say-hi" {
		t.Fatalf("Func phase: %v %v %+v", err, ran, res)
	}
	if ExitCode(nil) != 0 || ExitCode(exitcode.Usage(errors.New("x"))) != 2 {
		t.Fatal("ExitCode helper")
	}
}

// BenchmarkRunCheckpointedPhase measures the runner's overhead per resumable phase, dominated by
// the durable checkpoint (reset + atomic write with fsyncs) in a real state dir.
func BenchmarkRunCheckpointedPhase(b *testing.B) {
	d, err := state.Open(context.Background(), b.TempDir(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	store := NewDirCheckpoints(d)
	rec := &recorder{}
	n := 0
	for b.Loop() {
		n++
		p := &inputsLeaf{leaf: leaf{name: "p", rec: rec}, inputs: n} // new inputs: runs every time
		if _, err := Run(context.Background(), []Phase{p}, Options{Checkpoints: store}); err != nil {
			b.Fatal(err)
		}
		rec.reset()
	}
}

// BenchmarkRunSkippedPhase measures resuming: a phase skipped by its checkpoint.
func BenchmarkRunSkippedPhase(b *testing.B) {
	d, err := state.Open(context.Background(), b.TempDir(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	store := NewDirCheckpoints(d)
	rec := &recorder{}
	tree := []Phase{&inputsLeaf{leaf: leaf{name: "p", rec: rec}, inputs: map[string]any{"k": "v"}}}
	if _, err := Run(context.Background(), tree, Options{Checkpoints: store}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := Run(context.Background(), tree, Options{Checkpoints: store})
		if err != nil || res.Phases[0].Status != StatusSkippedCheckpoint {
			b.Fatal(err, res)
		}
	}
}

// A phase the operator interrupts (SIGINT: the Aborted cause) is reported as interrupted, not as
// failed: nothing went wrong with what it was doing.
func TestInterruptedPhaseIsNotFailed(t *testing.T) {
	_, store := openStore(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var events []Event
	tree := []Phase{Func("slow", "Slow", func(ctx context.Context) error {
		go cancel(exitcode.Aborted(errors.New("received interrupt")))
		<-ctx.Done()
		return ctx.Err()
	})}
	res, err := Run(ctx, tree, Options{Checkpoints: store, Events: SinkFunc(func(e Event) { events = append(events, e) })})
	if exitcode.ExitCode(err) != exitcode.AbortedByUser {
		t.Fatalf("exit %d for %v", exitcode.ExitCode(err), err)
	}
	if got := statuses(res); got != "slow=interrupted" {
		t.Errorf("statuses %s", got)
	}
	if last := events[len(events)-1]; last.Kind != EventEnd || last.Status != string(StatusInterrupted) {
		t.Errorf("last event %+v", last)
	}
}

// A concurrent group runs its children at the same time (each waits here until the other has
// started: run one after the other they would time out), checkpoints each, waits for all even
// when one fails, and fails with the first failure; a re-run runs only the failed child.
func TestConcurrentGroup(t *testing.T) {
	_, store := openStore(t)
	rec := &recorder{}
	var started sync.WaitGroup
	started.Add(2)
	meet := func(ctx context.Context) error {
		started.Done()
		done := make(chan struct{})
		go func() { started.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the other child did not start while this one ran")
		}
	}
	fail := true
	workers := &inputsLeaf{leaf: leaf{name: "workers", rec: rec, fn: func(ctx context.Context) error {
		if err := meet(ctx); err != nil {
			return err
		}
		if fail {
			return errors.New("worker join failed")
		}
		return nil
	}}, inputs: "w"}
	var installFinished atomic.Bool
	install := &inputsLeaf{leaf: leaf{name: "install", rec: rec, fn: func(ctx context.Context) error {
		err := meet(ctx)
		time.Sleep(200 * time.Millisecond) // still working when its sibling fails
		installFinished.Store(true)
		return err
	}}, inputs: "i"}
	after := &leaf{name: "after", rec: rec}
	tree := []Phase{NewConcurrentGroup("both", "Both at once", workers, install), after}
	var events []Event
	var mu sync.Mutex
	sink := SinkFunc(func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	res, err := Run(context.Background(), tree, Options{Checkpoints: store, Events: sink})
	var perr *Error
	if !errors.As(err, &perr) || perr.Path != "both/workers" || !strings.Contains(err.Error(), "worker join failed") {
		t.Fatalf("want the failure of both/workers, got %v", err)
	}
	if !installFinished.Load() {
		t.Error("the group returned before its other child finished")
	}
	if p, _ := res.Get("both/install"); p.Status != StatusRan {
		t.Errorf("install: %+v", p)
	}
	if strings.Contains(rec.String(), "after") {
		t.Error("the phase after a failed group ran")
	}
	if len(events) != 6 { // group start, 2 × (start, end), group end
		t.Errorf("%d events: %+v", len(events), events)
	}

	// The re-run: install is done (checkpointed), only workers runs, now without the other to meet.
	rec.reset()
	fail = false
	started = sync.WaitGroup{}
	started.Add(1)
	if _, err := Run(context.Background(), tree, Options{Checkpoints: store}); err != nil {
		t.Fatal(err)
	}
	if got := rec.String(); got != "workers after" {
		t.Errorf("re-run calls: %q, want workers after", got)
	}
}
