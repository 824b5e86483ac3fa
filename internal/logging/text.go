package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Tree layout of the text output.
const (
	indentUnit   = "  "
	titleColumns = 44 // indent + icon + title are padded to this width, then the duration
)

// Status icons of the phase tree.
const (
	iconGroup   = "▶"
	iconOK      = "✔"
	iconFailed  = "✖"
	iconSkipped = "↷"
	iconDryRun  = "○"
)

// treeState is shared by a text handler and all handlers derived from it (With, WithGroup): the
// stack of open phases decides the indentation of every line.
type treeState struct {
	mu   sync.Mutex
	w    io.Writer
	open []openPhase
	// lastFailed is the path of the last phase drawn as failed, so that a failed group does
	// not repeat the error its child already showed.
	lastFailed string
}

// lastFailedBelow returns the last failed phase if it is inside the group at path.
func (s *treeState) lastFailedBelow(path string) string {
	if strings.HasPrefix(s.lastFailed, path+"/") {
		return s.lastFailed
	}
	return ""
}

type openPhase struct {
	path, title   string
	depth         int
	headerPrinted bool
}

// textHandler renders records for people: phase events as a tree with durations, other records as
// indented lines under the phase that is running.
type textHandler struct {
	state  *treeState
	level  slog.Leveler
	prefix string // attributes bound with WithAttrs, already formatted
	group  string // current group prefix, "a.b."
}

func newTextHandler(w io.Writer, level slog.Leveler) *textHandler {
	return &textHandler{state: &treeState{w: w}, level: level}
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	c := *h
	c.prefix = b.String()
	return &c
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group += name + "."
	return &c
}

func (h *textHandler) Handle(_ context.Context, rec slog.Record) error {
	if ev, ok := phaseEventFromRecord(rec); ok {
		return h.state.phase(ev)
	}
	var b strings.Builder
	if rec.Level != slog.LevelInfo {
		b.WriteString(rec.Level.String())
		b.WriteByte(' ')
	}
	b.WriteString(rec.Message)
	b.WriteString(h.prefix)
	rec.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	return h.state.line(b.String())
}

// line writes a log line under the innermost open phase, printing that phase's header first if the
// phase is a leaf whose header was held back (leaves normally get one line, when they end).
func (s *treeState) line(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out strings.Builder
	depth := 0
	if n := len(s.open); n > 0 {
		top := &s.open[n-1]
		if !top.headerPrinted {
			fmt.Fprintf(&out, "%s%s %s\n", indent(top.depth), iconGroup, top.title)
			top.headerPrinted = true
		}
		depth = top.depth + 1
	}
	for i, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		pad := indent(depth)
		if i > 0 {
			pad += indentUnit
		}
		out.WriteString(pad + l + "\n")
	}
	_, err := io.WriteString(s.w, out.String())
	return err
}

func (s *treeState) phase(ev PhaseEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out strings.Builder
	switch ev.Kind {
	case EventPhaseStart:
		printed := false
		if ev.Group {
			fmt.Fprintf(&out, "%s%s %s\n", indent(ev.Depth), iconGroup, ev.Title)
			printed = true
		}
		s.open = append(s.open, openPhase{path: ev.Phase, title: ev.Title, depth: ev.Depth, headerPrinted: printed})
	case EventPhaseEnd:
		for i := len(s.open) - 1; i >= 0; i-- {
			if s.open[i].path == ev.Phase {
				s.open = s.open[:i]
				break
			}
		}
		icon, note := iconOK, ""
		switch ev.Status {
		case "failed":
			icon = iconFailed
		case "interrupted":
			icon, note = iconFailed, "interrupted"
		case "dry-run":
			icon, note = iconDryRun, "dry-run"
		}
		errText := ev.Err
		if ev.Group && (ev.Status == "failed" || ev.Status == "interrupted") {
			// The failing child's line already shows the error (groups wrap nothing of their own
			// unless their set-up failed, and then no child line exists).
			if len(s.lastFailedBelow(ev.Phase)) > 0 {
				errText = ""
			}
		}
		out.WriteString(statusLine(ev.Depth, icon, ev.Title, formatDuration(ev.Duration), note, errText))
		if ev.Status == "failed" {
			s.lastFailed = ev.Phase
		}
	case EventPhaseSkip:
		note := "skipped"
		if ev.Reason != "" {
			note += ": " + ev.Reason
		}
		out.WriteString(statusLine(ev.Depth, iconSkipped, ev.Title, "", note, ""))
	default:
		fmt.Fprintf(&out, "%s%s %s\n", indent(ev.Depth), ev.Kind, ev.Title)
	}
	_, err := io.WriteString(s.w, out.String())
	return err
}

// statusLine renders "  ✔ Title ........ 1.2s  note" plus an error, whose extra lines go below.
func statusLine(depth int, icon, title, duration, note, errText string) string {
	var b strings.Builder
	left := indent(depth) + icon + " " + title
	b.WriteString(left)
	if pad := titleColumns - utf8.RuneCountInString(left); pad > 0 {
		b.WriteString(strings.Repeat(" ", pad))
	} else {
		b.WriteByte(' ')
	}
	b.WriteString(fmt.Sprintf("%7s", duration))
	if note != "" {
		b.WriteString("  " + note)
	}
	var rest []string
	if errText != "" {
		lines := strings.Split(strings.TrimRight(errText, "\n"), "\n")
		b.WriteString("  error: " + lines[0])
		rest = lines[1:]
	}
	out := strings.TrimRight(b.String(), " ") + "\n"
	for _, l := range rest {
		out += indent(depth+2) + l + "\n"
	}
	return out
}

func indent(depth int) string { return strings.Repeat(indentUnit, depth) }

// formatDuration prints 0.0s..59.9s with one decimal, then 1m02s, 1h02m03s.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dh%02dm%02ds", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	}
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if v.Kind() == slog.KindGroup {
		prefix := group
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range v.Group() {
			appendAttr(b, prefix, g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group + a.Key)
	b.WriteByte('=')
	b.WriteString(quoteIfNeeded(formatValue(v)))
}

func formatValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
		return fmt.Sprintf("%+v", v.Any())
	default:
		return v.String()
	}
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return strconv.Quote(s)
	}
	return s
}
