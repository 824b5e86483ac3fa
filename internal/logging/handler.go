package logging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

// redactHandler masks secrets in every record before passing it on: the message, every attribute
// value (strings, errors, Stringers, arbitrary values that print a secret), nested groups, and the
// attributes bound earlier with Logger.With. Values under a secret-looking key ("password",
// "sudoPassword", "token", ...) are masked whatever they contain.
type redactHandler struct {
	inner slog.Handler
	r     *Redactor
}

// NewRedactingHandler wraps inner so that every record it receives is redacted by r first.
func NewRedactingHandler(inner slog.Handler, r *Redactor) slog.Handler {
	if r == nil {
		r = NewRedactor()
	}
	return &redactHandler{inner: inner, r: r}
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return &redactHandler{inner: h.inner.WithAttrs(red), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{inner: h.inner.WithGroup(name), r: h.r}
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, g := range group {
			red[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	}
	if IsSecretKey(a.Key) && !isEmpty(v) {
		return slog.String(a.Key, Masked)
	}
	return slog.Attr{Key: a.Key, Value: h.value(v)}
}

func isEmpty(v slog.Value) bool {
	return v.Kind() == slog.KindString && v.String() == "" ||
		v.Kind() == slog.KindAny && v.Any() == nil
}

func (h *redactHandler) value(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(h.r.String(v.String()))
	case slog.KindAny:
	default:
		return v // numbers, bools, times, durations carry no secrets
	}
	switch x := v.Any().(type) {
	case nil:
		return v
	case error:
		return slog.StringValue(h.r.String(x.Error()))
	case fmt.Stringer:
		return slog.StringValue(h.r.String(x.String()))
	case []byte:
		return slog.StringValue(h.r.String(string(x)))
	}
	// An arbitrary value (struct, map, slice): the output handlers will print it as JSON or with
	// fmt, so check both renderings and replace the value by the redacted rendering if either
	// reveals a secret. Secret-named struct fields and map keys are caught by the key patterns.
	text := fmt.Sprintf("%+v", v.Any())
	if red := h.r.String(text); red != text {
		return slog.StringValue(red)
	}
	if js, err := json.Marshal(v.Any()); err == nil {
		if red := h.r.String(string(js)); red != string(js) {
			return slog.StringValue(red)
		}
	}
	return v
}

// fanoutHandler sends each record to every handler that wants its level.
type fanoutHandler []slog.Handler

func (f fanoutHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanoutHandler) Handle(ctx context.Context, rec slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, rec.Level) {
			if err := h.Handle(ctx, rec.Clone()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (f fanoutHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(fanoutHandler, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (f fanoutHandler) WithGroup(name string) slog.Handler {
	out := make(fanoutHandler, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
