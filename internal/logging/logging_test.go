package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"text": FormatText, "json": FormatJSON, " JSON ": FormatJSON} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	_, err := ParseFormat("yaml")
	if err == nil || !strings.Contains(err.Error(), `"yaml"`) || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("want an error naming the flag and the value, got %v", err)
	}
	if exitcode.ExitCode(err) != exitcode.UsageError {
		t.Fatalf("a bad --log-format must be a usage error")
	}
}

// newTestLogger returns a logger writing to a buffer and to a debug file in a temp dir.
func newTestLogger(t *testing.T, format Format, red *Redactor) (*Logger, *bytes.Buffer, string) {
	t.Helper()
	var out bytes.Buffer
	debug := filepath.Join(t.TempDir(), "logs", "debug.log")
	l, err := New(Options{Format: format, Out: &out, DebugFile: debug, Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &out, debug
}

func at(sec float64) time.Time {
	return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(sec * float64(time.Second)))
}

// emitSampleRun logs the events of a small run: a group with three leaves, one of which logs, one
// skipped by checkpoint, one failing with a two-line error.
func emitSampleRun(l *Logger) {
	l.Phase(PhaseEvent{Time: at(0), Kind: EventPhaseStart, Phase: "bootstrap", Depth: 0, Group: true, Title: "Bootstrap"})
	l.Phase(PhaseEvent{Time: at(0), Kind: EventPhaseStart, Phase: "bootstrap/preflight", Depth: 1, Title: "Preflight checks"})
	l.Phase(PhaseEvent{Time: at(1.2), Kind: EventPhaseEnd, Phase: "bootstrap/preflight", Depth: 1, Title: "Preflight checks", Duration: 1200 * time.Millisecond, Status: "ran"})
	l.Phase(PhaseEvent{Time: at(1.2), Kind: EventPhaseSkip, Phase: "bootstrap/infra", Depth: 1, Title: "Create infrastructure", Status: "skipped-checkpoint", Reason: "done in an earlier run"})
	l.Phase(PhaseEvent{Time: at(1.2), Kind: EventPhaseStart, Phase: "bootstrap/cni", Depth: 1, Title: "Install CNI"})
	l.Slog().Info("applied manifests", "count", 14, "password", "hunter2")
	l.Phase(PhaseEvent{Time: at(5.2), Kind: EventPhaseEnd, Phase: "bootstrap/cni", Depth: 1, Title: "Install CNI", Duration: 4 * time.Second, Status: "ran"})
	l.Phase(PhaseEvent{Time: at(5.2), Kind: EventPhaseStart, Phase: "bootstrap/wait", Depth: 1, Title: "Wait for cluster"})
	l.Phase(PhaseEvent{Time: at(35.2), Kind: EventPhaseEnd, Phase: "bootstrap/wait", Depth: 1, Title: "Wait for cluster", Duration: 30 * time.Second, Status: "failed",
		Err: "phase bootstrap/wait: API server not ready after 30s\nlast output: token=abcdef"})
	l.Phase(PhaseEvent{Time: at(35.2), Kind: EventPhaseEnd, Phase: "bootstrap", Depth: 0, Group: true, Title: "Bootstrap", Duration: 35200 * time.Millisecond, Status: "failed", Err: "phase bootstrap/wait: API server not ready after 30s"})
}

func TestTextTreeLayout(t *testing.T) {
	l, out, _ := newTestLogger(t, FormatText, nil)
	emitSampleRun(l)
	want := "" +
		"▶ Bootstrap\n" +
		"  ✔ Preflight checks                           1.2s\n" +
		"  ↷ Create infrastructure                            skipped: done in an earlier run\n" +
		"  ▶ Install CNI\n" +
		"    applied manifests count=14 password=[REDACTED]\n" +
		"  ✔ Install CNI                                4.0s\n" +
		"  ✖ Wait for cluster                          30.0s  error: phase bootstrap/wait: API server not ready after 30s\n" +
		"      last output: token=[REDACTED]\n" +
		"✖ Bootstrap                                   35.2s\n"
	if got := out.String(); got != want {
		t.Fatalf("text tree:\n%s\nwant:\n%s", got, want)
	}
}

func TestTextFailedGroupSetupShowsError(t *testing.T) {
	l, out, _ := newTestLogger(t, FormatText, nil)
	l.Phase(PhaseEvent{Kind: EventPhaseStart, Phase: "g", Group: true, Title: "Group"})
	l.Phase(PhaseEvent{Kind: EventPhaseEnd, Phase: "g", Group: true, Title: "Group", Status: "failed", Duration: time.Second, Err: "phase g: set-up failed"})
	want := "▶ Group\n✖ Group                                        1.0s  error: phase g: set-up failed\n"
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestTextLogLinesOutsidePhasesAndLevels(t *testing.T) {
	var out bytes.Buffer
	l, err := New(Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	l.Slog().Debug("hidden unless verbose")
	l.Slog().Warn("disk almost full", "path", "/var lib", slog.Group("node", "name", "m-0"))
	l.Slog().With("host", "10.0.0.1").Info("multi\nline")
	got := out.String()
	if strings.Contains(got, "hidden") {
		t.Fatalf("debug record shown without Verbose:\n%s", got)
	}
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	wantLines := []string{`WARN disk almost full path="/var lib" node.name=m-0`, "multi", "  line host=10.0.0.1"}
	if fmt.Sprint(lines) != fmt.Sprint(wantLines) {
		t.Fatalf("got lines %q, want %q", lines, wantLines)
	}

	out.Reset()
	lv, err := New(Options{Out: &out, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	lv.Slog().Debug("shown when verbose")
	if !strings.Contains(out.String(), "DEBUG shown when verbose") {
		t.Fatalf("verbose logger dropped a debug record: %q", out.String())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                   "0.0s",
		40 * time.Millisecond:               "0.0s",
		1250 * time.Millisecond:             "1.2s",
		59900 * time.Millisecond:            "59.9s",
		62 * time.Second:                    "1m02s",
		time.Hour + 2*time.Minute + 3e9:     "1h02m03s",
		25*time.Hour + 500*time.Millisecond: "25h00m01s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// decodeLines parses every line of b as one JSON object.
func decodeLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var objs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", sc.Text(), err)
		}
		objs = append(objs, m)
	}
	return objs
}

func TestJSONOutputOneObjectPerEvent(t *testing.T) {
	l, out, _ := newTestLogger(t, FormatJSON, NewRedactor("hunter2"))
	emitSampleRun(l)
	l.Slog().Error("login failed", "err", errors.New("ssh: password hunter2 rejected"))
	objs := decodeLines(t, out.Bytes())
	if len(objs) != 11 {
		t.Fatalf("want 11 objects (10 phase events + 1 record), got %d:\n%s", len(objs), out)
	}
	first := objs[0]
	if first["event"] != "phase-start" || first["phase"] != "bootstrap" || first["title"] != "Bootstrap" || first["group"] != true {
		t.Fatalf("first event: %v", first)
	}
	if objs[2]["event"] != "phase-end" || objs[2]["duration_seconds"] != 1.2 || objs[2]["status"] != "ran" || objs[2]["depth"] != float64(1) {
		t.Fatalf("phase-end event: %v", objs[2])
	}
	if objs[3]["status"] != "skipped-checkpoint" || objs[3]["reason"] != "done in an earlier run" {
		t.Fatalf("skip event: %v", objs[3])
	}
	if objs[8]["level"] != "ERROR" || objs[8]["status"] != "failed" {
		t.Fatalf("failed phase must be logged at ERROR: %v", objs[8])
	}
	if strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), "abcdef") {
		t.Fatalf("secret leaked into JSON output:\n%s", out)
	}
	if objs[10]["err"] != "ssh: password [REDACTED] rejected" {
		t.Fatalf("error attribute not redacted: %v", objs[10]["err"])
	}
}

var wholeLine = regexp.MustCompile(`^step done worker=\d+ i=\d+ note=x{200} password=\[REDACTED\]$`)

func TestConcurrentLoggingKeepsLinesWhole(t *testing.T) {
	for _, format := range []Format{FormatJSON, FormatText} {
		l, out, debug := newTestLogger(t, format, NewRedactor("hunter2"))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				log := l.Slog().With("worker", g)
				for i := range 100 {
					log.Info("step done", "i", i, "note", strings.Repeat("x", 200), "password", "hunter2")
				}
			}()
		}
		wg.Wait()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(debug)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(decodeLines(t, data)); n != 800 {
			t.Fatalf("%s: debug file has %d records, want 800", format, n)
		}
		if format == FormatJSON {
			if n := len(decodeLines(t, out.Bytes())); n != 800 {
				t.Fatalf("JSON output has %d records, want 800", n)
			}
		} else {
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			if len(lines) != 800 {
				t.Fatalf("text output has %d lines, want 800", len(lines))
			}
			for _, line := range lines {
				if !wholeLine.MatchString(line) {
					t.Fatalf("mangled line %q", line)
				}
			}
		}
		if strings.Contains(out.String(), "hunter2") || bytes.Contains(data, []byte("hunter2")) {
			t.Fatal("secret leaked")
		}
	}
}

func TestDebugFileAlwaysJSONAtDebugLevel(t *testing.T) {
	l, out, debug := newTestLogger(t, FormatText, NewRedactor("hunter2"))
	l.Slog().Debug("dialing", "host", "10.0.0.1", "sudoPassword", "hunter2")
	emitSampleRun(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if strings.Contains(out.String(), "dialing") {
		t.Fatal("debug record reached the non-verbose text output")
	}
	fi, err := os.Stat(debug)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("debug file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(debug))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("debug dir mode %v, want 0700", di.Mode().Perm())
	}
	data, err := os.ReadFile(debug)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeLines(t, data)
	if len(objs) != 11 {
		t.Fatalf("debug file: want 11 records, got %d:\n%s", len(objs), data)
	}
	if objs[0]["level"] != "DEBUG" || objs[0]["sudoPassword"] != Masked || objs[0]["source"] == nil {
		t.Fatalf("debug record: %v", objs[0])
	}
	if bytes.Contains(data, []byte("hunter2")) {
		t.Fatalf("secret leaked into the debug file:\n%s", data)
	}
}

func TestDebugFileAppendsAndTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debug.log")
	if err := os.WriteFile(path, []byte(`{"msg":"earlier run"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Out: &bytes.Buffer{}, DebugFile: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Slog().Info("this run")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	objs := decodeLines(t, data)
	if len(objs) != 2 || objs[0]["msg"] != "earlier run" || objs[1]["msg"] != "this run" {
		t.Fatalf("debug log not appended: %s", data)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestDebugFileError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Out: &bytes.Buffer{}, DebugFile: filepath.Join(blocker, "debug.log")})
	if err == nil || !strings.Contains(err.Error(), "debug log") {
		t.Fatalf("want an error naming the debug log, got %v", err)
	}
}

type config struct {
	User     string
	Password string
}

type stringer struct{}

func (stringer) String() string { return "token=abcdef" }

func TestRedactingHandlerCoversEverything(t *testing.T) {
	var out bytes.Buffer
	red := NewRedactor("hunter2")
	log := slog.New(NewRedactingHandler(slog.NewJSONHandler(&out, nil), red))
	log = log.With("bound", "pw hunter2", slog.Group("g", "inner", "hunter2"))
	log.WithGroup("req").Info("message with hunter2",
		"err", fmt.Errorf("wrapped: %w", errors.New("bad password=hunter2x")),
		"cfg", config{User: "u", Password: "opaque-value"},
		"cfgptr", &config{User: "u", Password: "opaque-value"},
		"m", map[string]string{"token": "t0k3n"},
		"bytes", []byte("auth: hunter2"),
		"str", stringer{},
		slog.Group("nested", slog.Group("deeper", "secret", "s", "value", "x hunter2 y")),
		"count", 3,
		"ok", true,
		"empty_password", "",
		"lazy", slog.AnyValue(lazy{}),
	)
	s := out.String()
	for _, leak := range []string{"hunter2", "opaque-value", "t0k3n", "abcdef"} {
		if strings.Contains(s, leak) {
			t.Errorf("%q leaked: %s", leak, s)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	req := m["req"].(map[string]any)
	if m["msg"] != "message with [REDACTED]" || m["bound"] != "pw [REDACTED]" {
		t.Errorf("message/bound attr: %v", m)
	}
	if req["count"] != float64(3) || req["ok"] != true {
		t.Errorf("non-secret values changed: %v", req)
	}
	deeper := req["nested"].(map[string]any)["deeper"].(map[string]any)
	if deeper["secret"] != Masked || deeper["value"] != "x [REDACTED] y" {
		t.Errorf("nested groups: %v", deeper)
	}
	if req["empty_password"] != "" {
		t.Errorf("an empty secret field should stay empty (nothing to hide): %v", req["empty_password"])
	}
	if req["lazy"] != "password=[REDACTED]" {
		t.Errorf("LogValuer not resolved and redacted: %v", req["lazy"])
	}
}

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("password=hunter3") }

func BenchmarkLoggerInfoText(b *testing.B) {
	var out bytes.Buffer
	l, err := New(Options{Out: &out, Redactor: NewRedactor("hunter2")})
	if err != nil {
		b.Fatal(err)
	}
	log := l.Slog()
	b.ReportAllocs()
	for b.Loop() {
		log.Info("applied manifests", "host", "10.0.0.1", "count", 14, "phase", "bootstrap/install/cni")
		out.Reset()
	}
}

func BenchmarkLoggerInfoJSONWithDebugFile(b *testing.B) {
	var out bytes.Buffer
	l, err := New(Options{Format: FormatJSON, Out: &out, DebugFile: filepath.Join(b.TempDir(), "d.log"), Redactor: NewRedactor("hunter2")})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	log := l.Slog()
	b.ReportAllocs()
	for b.Loop() {
		log.Info("applied manifests", "host", "10.0.0.1", "count", 14, "phase", "bootstrap/install/cni")
		out.Reset()
	}
}
