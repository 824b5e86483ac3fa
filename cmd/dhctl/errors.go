package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/logging"
)

// usageError marks err as the user's input being wrong (exit 2), not the operation failing.
func usageError(err error) error { return exitcode.Usage(err) }

// printError reports the final error: a line for people, or with --log-format json one JSON
// object like every other event, so a machine reading the stream needs no second parser.
func printError(w io.Writer, err error, code int, logFormat string) {
	if format, ferr := logging.ParseFormat(logFormat); ferr == nil && format == logging.FormatJSON {
		line, _ := json.Marshal(struct {
			Time     string `json:"time"`
			Level    string `json:"level"`
			Msg      string `json:"msg"`
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}{time.Now().UTC().Format(time.RFC3339Nano), "ERROR", "dhctl failed", err.Error(), code})
		fmt.Fprintf(w, "%s\n", line)
		return
	}
	fmt.Fprintf(w, "Error: %v\n", err)
}
