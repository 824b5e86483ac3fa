package phase

import (
	"context"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/logging"
)

// funcPhase is a leaf phase made from a function.
type funcPhase struct {
	name, title string
	run         func(context.Context) error
}

// Func returns a phase running fn. It has no inputs, so it runs every time (see package doc);
// write a type implementing WithInputs for a resumable phase.
func Func(name, title string, fn func(ctx context.Context) error) Phase {
	return &funcPhase{name: name, title: title, run: fn}
}

func (f *funcPhase) Name() string                  { return f.name }
func (f *funcPhase) Title() string                 { return f.title }
func (f *funcPhase) Run(ctx context.Context) error { return f.run(ctx) }

// group is a Group without set-up of its own.
type group struct {
	name, title string
	children    []Phase
}

// NewGroup returns a group of children whose own Run does nothing.
func NewGroup(name, title string, children ...Phase) Group {
	return &group{name: name, title: title, children: children}
}

func (g *group) Name() string                 { return g.name }
func (g *group) Title() string                { return g.title }
func (g *group) Run(context.Context) error    { return nil }
func (g *group) Phases() []Phase              { return g.children }
func (g *group) DryRun(context.Context) error { return nil }

// concurrentGroup is a group whose children run at the same time.
type concurrentGroup struct{ group }

// NewConcurrentGroup returns a group whose children run at the same time (each with its own
// checkpoint, as in any group), for work that shares nothing but what earlier phases made. The
// group waits for every child, even after one failed, so that none is left half done, and
// fails with the first failure in the children's order. A dry run previews them in order.
func NewConcurrentGroup(name, title string, children ...Phase) Group {
	return &concurrentGroup{group{name: name, title: title, children: children}}
}

func (g *concurrentGroup) Concurrent() bool { return true }

// LogSink returns a Sink drawing events with a logging.Logger (phase tree or JSON, plus the debug
// log). The import goes phase → logging only; logging knows nothing of this package.
func LogSink(l *logging.Logger) Sink {
	return SinkFunc(func(e Event) {
		l.Phase(logging.PhaseEvent{
			Time: e.Time, Kind: e.Kind, Phase: e.Phase, Depth: e.Depth, Group: e.Group, Title: e.Title,
			Duration: e.Duration, Status: e.Status, Err: e.Err, Reason: e.Reason,
		})
	})
}

// ExitCode is exitcode.ExitCode, here for callers that already import phase:
// 0 nil, 3 aborted by the user, 2 usage/config error, else 1.
func ExitCode(err error) int { return exitcode.ExitCode(err) }
