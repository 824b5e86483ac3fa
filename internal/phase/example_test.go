package phase_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// installCNI is a resumable phase: it declares its inputs, so a re-run with the same plugin and
// MTU skips it.
type installCNI struct {
	plugin string
	mtu    int
	log    *logging.Logger
}

func (p *installCNI) Name() string  { return "cni" }
func (p *installCNI) Title() string { return "Install CNI" }
func (p *installCNI) Inputs() (any, error) {
	return map[string]any{"plugin": p.plugin, "mtu": p.mtu}, nil
}
func (p *installCNI) Run(ctx context.Context) error {
	p.log.Slog().Info("applied manifests", "plugin", p.plugin)
	return nil
}

// Example shows how a command wires the state dir, the logger and the runner together.
func Example() {
	root, _ := os.MkdirTemp("", "dhctl-example")
	defer os.RemoveAll(root)
	ctx := context.Background()

	dir, err := state.Open(ctx, root, "demo")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dir.Close()
	debugLog, _ := dir.LogFile("bootstrap", time.Now())
	log, err := logging.New(logging.Options{Out: os.Stdout, DebugFile: debugLog, Redactor: logging.NewRedactor()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()

	tree := []phase.Phase{
		phase.NewGroup("bootstrap", "Bootstrap",
			phase.Func("preflight", "Preflight checks", func(context.Context) error { return nil }),
			&installCNI{plugin: "flannel", mtu: 1450, log: log},
		),
	}
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { tick = tick.Add(500 * time.Millisecond); return tick } // fixed durations for the example
	opts := phase.Options{Checkpoints: phase.NewDirCheckpoints(dir), Events: phase.LogSink(log), Clock: clock}

	for range 2 { // the second run resumes: cni is skipped, preflight (no inputs) runs again
		_, err = phase.Run(ctx, tree, opts)
		fmt.Println("exit code", phase.ExitCode(err))
	}
	// Output:
	// ▶ Bootstrap
	//   ✔ Preflight checks                           1.0s
	//   ▶ Install CNI
	//     applied manifests plugin=flannel
	//   ✔ Install CNI                                1.0s
	// ✔ Bootstrap                                    3.5s
	// exit code 0
	// ▶ Bootstrap
	//   ✔ Preflight checks                           1.0s
	//   ↷ Install CNI                                      skipped: done in an earlier run (2026-01-01T00:00:03Z)
	// ✔ Bootstrap                                    2.5s
	// exit code 0
}
