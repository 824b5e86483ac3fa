package phase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dhctl-dev/dhctl/internal/logging"
)

func loggedTree(log *logging.Logger) []Phase {
	return []Phase{NewGroup("bootstrap", "Bootstrap",
		Func("preflight", "Preflight checks", func(context.Context) error { return nil }),
		Func("infra", "Create infrastructure", func(context.Context) error { return nil }),
		Func("cni", "Install CNI", func(context.Context) error {
			log.Slog().Info("applied manifests", "count", 14)
			return nil
		}),
		Func("wait", "Wait for cluster", func(context.Context) error {
			return errors.New("API server not ready: password=hunter2 rejected")
		}),
	)}
}

func TestLogSinkDrawsThePhaseTree(t *testing.T) {
	var out bytes.Buffer
	log, err := logging.New(logging.Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), loggedTree(log), Options{Events: LogSink(log), Clock: fakeClock(), Skip: []string{"infra"}})
	if err == nil {
		t.Fatal("want the wait phase to fail")
	}
	want := "" +
		"▶ Bootstrap\n" +
		"  ✔ Preflight checks                           0.1s\n" +
		"  ↷ Create infrastructure                            skipped: --skip-phase\n" +
		"  ▶ Install CNI\n" +
		"    applied manifests count=14\n" +
		"  ✔ Install CNI                                0.1s\n" +
		"  ✖ Wait for cluster                           0.1s  error: phase bootstrap/wait: API server not ready: password=[REDACTED] rejected\n" +
		"✖ Bootstrap                                    0.8s\n"
	if out.String() != want {
		t.Fatalf("tree:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestLogSinkJSON(t *testing.T) {
	var out bytes.Buffer
	log, err := logging.New(logging.Options{Out: &out, Format: logging.FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	Run(context.Background(), loggedTree(log), Options{Events: LogSink(log)})
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		kind, _ := m["event"].(string)
		if kind == "" {
			kind = m["msg"].(string)
		}
		kinds = append(kinds, kind+":"+strings.TrimSpace(stringOr(m["phase"])))
	}
	want := "phase-start:bootstrap phase-start:bootstrap/preflight phase-end:bootstrap/preflight phase-start:bootstrap/infra phase-end:bootstrap/infra phase-start:bootstrap/cni applied manifests: phase-end:bootstrap/cni phase-start:bootstrap/wait phase-end:bootstrap/wait phase-end:bootstrap"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("events:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Fatal("secret leaked")
	}
}

func stringOr(v any) string {
	s, _ := v.(string)
	return s
}
