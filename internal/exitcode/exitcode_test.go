package exitcode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestExitCode(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil is success", nil, OK},
		{"plain error fails", base, Failed},
		{"wrapped plain error fails", fmt.Errorf("phase x: %w", base), Failed},
		{"usage", Usage(base), UsageError},
		{"usage wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", Usage(base))), UsageError},
		{"usage inside errors.Join", errors.Join(base, Usage(errors.New("bad flag"))), UsageError},
		{"aborted", Aborted(context.Canceled), AbortedByUser},
		{"aborted wrapped", fmt.Errorf("phase x: %w", Aborted(context.Canceled)), AbortedByUser},
		{"aborted wins over usage", errors.Join(Usage(base), Aborted(context.Canceled)), AbortedByUser},
		{"drift", Drifted(base), Drift},
		{"drift wrapped", fmt.Errorf("converge: %w", Drifted(base)), Drift},
		{"usage wins over drift", errors.Join(Drifted(base), Usage(base)), UsageError},
		{"bare context.Canceled is a failure", context.Canceled, Failed},
		{"deadline is a failure", fmt.Errorf("wait: %w", context.DeadlineExceeded), Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestMarksKeepMessageAndChain(t *testing.T) {
	if Usage(nil) != nil || Aborted(nil) != nil || Drifted(nil) != nil {
		t.Fatal("marking nil must give nil")
	}
	cause := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	for _, err := range []error{Usage(cause), Aborted(cause)} {
		if err.Error() != cause.Error() {
			t.Errorf("message changed: %q", err.Error())
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is lost the cause of %T", err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Errorf("errors.As lost the cause of %T", err)
		}
	}
	if IsUsage(Aborted(cause)) || IsAborted(Usage(cause)) {
		t.Error("marks must not be confused")
	}
}

func TestSignalContextCancelsWithAbortedCause(t *testing.T) {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	// A real signal to our own process: the handler installed above catches it.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled within 10s of SIGTERM")
	}
	cause := context.Cause(ctx)
	if ExitCode(cause) != AbortedByUser {
		t.Fatalf("cause %v gives exit code %d, want 3", cause, ExitCode(cause))
	}
	var se *SignalError
	if !errors.As(cause, &se) || se.Signal != syscall.SIGTERM {
		t.Fatalf("cause %v does not name SIGTERM", cause)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("ctx.Err() = %v", ctx.Err())
	}
}

func TestSignalContextStop(t *testing.T) {
	ctx, stop := SignalContext(context.Background())
	stop()
	stop() // idempotent
	if ctx.Err() == nil {
		t.Fatal("stop must cancel the context")
	}
	if ExitCode(context.Cause(ctx)) == AbortedByUser {
		t.Fatal("a normal stop is not a user abort")
	}
}
