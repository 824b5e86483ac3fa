package main

import (
	"fmt"
	"io"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

// usageError marks err as the user's input being wrong (exit 2), not the operation failing.
func usageError(err error) error { return exitcode.Usage(err) }

func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "Error: %v\n", err)
}
