// Package logging is dhctl's output: a phase tree with durations for people (text) or one JSON
// object per event (json) on the output stream, plus a full debug log (JSON lines, debug level)
// written to a file, with secrets masked from everything by a Redactor.
//
// Import direction: logging imports neither phase nor state. Phase events arrive as the generic
// PhaseEvent through (*Logger).Phase; package phase provides the adapter (phase.LogSink) that turns
// its events into PhaseEvent, so phase → logging is the only edge.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

// Format selects how the output stream is rendered.
type Format string

// Output formats.
const (
	FormatText Format = "text"
	FormatJSON Format = "json"
)

// ParseFormat parses the value of --log-format. An unknown value is a usage error.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatText, FormatJSON:
		return f, nil
	}
	return "", exitcode.Usage(fmt.Errorf("--log-format: unknown format %q: use %q or %q", s, FormatText, FormatJSON))
}

// Options configure a Logger.
type Options struct {
	// Format of Out; "" means text.
	Format Format
	// Out receives the human or JSON output, usually os.Stderr; nil means os.Stderr.
	Out io.Writer
	// DebugFile is the path of the debug log: JSON lines at debug level with source positions,
	// appended to, created 0600 (its directory 0700). Commands always set it (a file in the state
	// dir); "" disables it, for tests and for errors before the state dir is known.
	DebugFile string
	// Redactor masks secrets in everything logged; nil means a new one with built-in patterns only.
	// Keep a pointer to add secrets found later (Redactor.Add): it is shared, not copied.
	Redactor *Redactor
	// Verbose lowers Out's level from info to debug.
	Verbose bool
}

// Logger is the run's logger. Use Slog() for log records and Phase for phase-tree events.
type Logger struct {
	slog     *slog.Logger
	redactor *Redactor
	debug    *os.File
	closeMu  sync.Mutex
	closed   bool
}

// New builds a Logger. The only error is failing to open the debug file.
func New(opts Options) (*Logger, error) {
	format := opts.Format
	if format == "" {
		format = FormatText
	}
	if _, err := ParseFormat(string(format)); err != nil {
		return nil, err
	}
	out := opts.Out
	if out == nil {
		out = os.Stderr
	}
	level := slog.LevelInfo
	if opts.Verbose {
		level = slog.LevelDebug
	}
	red := opts.Redactor
	if red == nil {
		red = NewRedactor()
	}

	var handlers fanoutHandler
	if format == FormatJSON {
		handlers = append(handlers, slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))
	} else {
		handlers = append(handlers, newTextHandler(out, level))
	}
	l := &Logger{redactor: red}
	if opts.DebugFile != "" {
		f, err := openDebugFile(opts.DebugFile)
		if err != nil {
			return nil, err
		}
		l.debug = f
		handlers = append(handlers, slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true}))
	}
	l.slog = slog.New(NewRedactingHandler(handlers, red))
	return l, nil
}

func openDebugFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("debug log %s: creating its directory: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("debug log: %w", err)
	}
	// The file may pre-exist with wider permissions; it can hold details of the environment.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("debug log %s: setting mode 0600: %w", path, err)
	}
	return f, nil
}

// Slog returns the structured logger; every record it takes is redacted.
func (l *Logger) Slog() *slog.Logger { return l.slog }

// Redactor returns the Redactor used for everything logged, to add secrets learnt later.
func (l *Logger) Redactor() *Redactor { return l.redactor }

// Close flushes and closes the debug file. Records logged afterwards reach only Out.
func (l *Logger) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed || l.debug == nil {
		l.closed = true
		return nil
	}
	l.closed = true
	return errors.Join(l.debug.Sync(), l.debug.Close())
}

// Phase event kinds (PhaseEvent.Kind).
const (
	EventPhaseStart = "phase-start"
	EventPhaseEnd   = "phase-end"
	EventPhaseSkip  = "phase-skip"
)

// PhaseEvent is a phase runner event, independent of the runner's own types (see the package doc).
type PhaseEvent struct {
	Time     time.Time
	Kind     string // EventPhaseStart, EventPhaseEnd or EventPhaseSkip
	Phase    string // path, e.g. "bootstrap/install/cni"
	Depth    int    // 0 for top-level phases
	Group    bool   // the phase has children (its start opens a branch of the tree)
	Title    string
	Duration time.Duration
	Status   string // ran, failed, dry-run, skipped-checkpoint, skipped-flag, skipped-condition
	Err      string
	Reason   string
}

// Attribute keys of phase-event records. A record whose "event" attribute holds a phase event
// kind is drawn in the tree by the text format; JSON consumers filter on it.
const (
	keyEvent    = "event"
	keyPhase    = "phase"
	keyDepth    = "depth"
	keyGroup    = "group"
	keyTitle    = "title"
	keyDuration = "duration_seconds"
	keyStatus   = "status"
	keyError    = "error"
	keyReason   = "reason"
)

// Phase logs a phase event: a line of the tree in text format, an object in JSON, and always a
// record in the debug file. Failures are logged at error level, the rest at info.
func (l *Logger) Phase(ev PhaseEvent) {
	level := slog.LevelInfo
	switch ev.Status {
	case "failed":
		level = slog.LevelError
	case "interrupted":
		level = slog.LevelWarn
	}
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	rec := slog.NewRecord(t, level, ev.Kind, 0)
	rec.AddAttrs(
		slog.String(keyEvent, ev.Kind),
		slog.String(keyPhase, ev.Phase),
		slog.Int(keyDepth, ev.Depth),
		slog.Bool(keyGroup, ev.Group),
		slog.String(keyTitle, ev.Title),
	)
	if ev.Kind != EventPhaseStart {
		rec.AddAttrs(slog.Float64(keyDuration, ev.Duration.Seconds()))
	}
	if ev.Status != "" {
		rec.AddAttrs(slog.String(keyStatus, ev.Status))
	}
	if ev.Err != "" {
		rec.AddAttrs(slog.String(keyError, ev.Err))
	}
	if ev.Reason != "" {
		rec.AddAttrs(slog.String(keyReason, ev.Reason))
	}
	ctx := context.Background()
	if l.slog.Handler().Enabled(ctx, level) {
		_ = l.slog.Handler().Handle(ctx, rec)
	}
}

// phaseEventFromRecord recovers a PhaseEvent from a (redacted) record built by Logger.Phase.
func phaseEventFromRecord(rec slog.Record) (PhaseEvent, bool) {
	var ev PhaseEvent
	ok := false
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case keyEvent:
			ev.Kind = a.Value.String()
			ok = strings.HasPrefix(ev.Kind, "phase-")
		case keyPhase:
			ev.Phase = a.Value.String()
		case keyDepth:
			if a.Value.Kind() == slog.KindInt64 {
				ev.Depth = int(a.Value.Int64())
			}
		case keyGroup:
			ev.Group = a.Value.Kind() == slog.KindBool && a.Value.Bool()
		case keyTitle:
			ev.Title = a.Value.String()
		case keyDuration:
			if a.Value.Kind() == slog.KindFloat64 {
				ev.Duration = time.Duration(a.Value.Float64() * float64(time.Second))
			}
		case keyStatus:
			ev.Status = a.Value.String()
		case keyError:
			ev.Err = a.Value.String()
		case keyReason:
			ev.Reason = a.Value.String()
		}
		return true
	})
	ev.Time = rec.Time
	return ev, ok
}
