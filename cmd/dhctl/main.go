// Command dhctl bootstraps, converges and destroys vanilla Kubernetes clusters from a few YAML
// documents. This package only turns flags into typed options and calls operations.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.LookupEnv))
}

// streams are the process's standard streams, passed explicitly so tests run commands in-process.
type streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// run executes one dhctl command line and returns the process exit code:
// 0 ok, 1 failed, 2 usage or configuration error, 3 aborted by the user.
func run(parent context.Context, args []string, io streams, lookupEnv func(string) (string, bool)) int {
	ctx, stop := exitcode.SignalContext(parent)
	defer stop()

	root, inv := newRootCommand(io, lookupEnv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	if !inv.started {
		err = usageError(err) // cobra refused the command line before running anything
	}
	// Whatever an operation returns after the user interrupted it is an abort, not a failure.
	if cause := context.Cause(ctx); exitcode.IsAborted(cause) && !exitcode.IsAborted(err) {
		err = exitcode.Aborted(fmt.Errorf("%v: %w", cause, err))
	}
	code := exitcode.ExitCode(err)
	printError(io.Err, err, code, inv.opts.LogFormat)
	return code
}
