// Package exitcode maps an error returned by an operation to dhctl's process exit code:
//
//	0  success (nil error)
//	1  the operation failed
//	2  usage or configuration error (bad flag, invalid document): fix the input and retry
//	3  aborted by the user (SIGINT/SIGTERM)
//	4  drift: a check (converge --check) found the cluster differs from its configuration
//
// Library code never exits; it marks errors with Usage or Aborted and the command's main turns the
// final error into a code with ExitCode. Marks survive wrapping (fmt.Errorf("...: %w", err)) because
// detection uses errors.As.
package exitcode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Process exit codes.
const (
	OK            = 0
	Failed        = 1
	UsageError    = 2
	AbortedByUser = 3
	Drift         = 4
)

// usageError marks its cause as a usage/configuration error.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// abortedError marks its cause as an abort requested by the user.
type abortedError struct{ err error }

func (e *abortedError) Error() string { return e.err.Error() }
func (e *abortedError) Unwrap() error { return e.err }

// Usage marks err as a usage or configuration error (exit code 2). The message is unchanged.
// Usage(nil) is nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &usageError{err: err}
}

// Aborted marks err as caused by the user aborting the run (exit code 3), typically a context
// cancelled on SIGINT/SIGTERM. The message is unchanged. Aborted(nil) is nil.
func Aborted(err error) error {
	if err == nil {
		return nil
	}
	return &abortedError{err: err}
}

// driftError marks its cause as a difference a check found.
type driftError struct{ err error }

func (e *driftError) Error() string { return e.err.Error() }
func (e *driftError) Unwrap() error { return e.err }

// Drifted marks err as the finding of a check that the cluster differs from its configuration
// (exit code 4): nothing failed, but something would change. Drifted(nil) is nil.
func Drifted(err error) error {
	if err == nil {
		return nil
	}
	return &driftError{err: err}
}

// IsDrift reports whether err (or anything it wraps) was marked with Drifted.
func IsDrift(err error) bool {
	var d *driftError
	return errors.As(err, &d)
}

// IsUsage reports whether err (or anything it wraps) was marked with Usage.
func IsUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// IsAborted reports whether err (or anything it wraps) was marked with Aborted.
func IsAborted(err error) bool {
	var a *abortedError
	return errors.As(err, &a)
}

// ExitCode returns the process exit code for the final error of a command. An abort by the user
// wins over everything else (the user asked to stop, whatever else went wrong on the way out).
// A plain context.Canceled without the Aborted mark is a failure (1): only the code that saw the
// signal knows the user asked for it.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return OK
	case IsAborted(err):
		return AbortedByUser
	case IsUsage(err):
		return UsageError
	case IsDrift(err):
		return Drift
	default:
		return Failed
	}
}

// SignalError is the cancellation cause recorded by SignalContext.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string {
	return fmt.Sprintf("aborted by the user (received %s)", e.Signal)
}

// SignalContext returns a context cancelled on the first SIGINT or SIGTERM with cause
// Aborted(&SignalError{...}), so that context.Cause(ctx) carries the mark and ExitCode gives 3
// for errors wrapping it. After the first signal the default handling is restored, so a second
// Ctrl-C kills the process at once (state writes are atomic, so that is safe). Call stop to
// release the signal handler.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			cancel(Aborted(&SignalError{Signal: s}))
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel(context.Canceled)
		})
	}
}
