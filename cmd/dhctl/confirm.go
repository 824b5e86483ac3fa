package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
)

// confirm asks for "yes" on in after the prompt; anything else (no terminal: an empty stdin) is
// the operation's refusal, exit 3, saying what was kept.
func confirm(in io.Reader, out io.Writer, prompt, operation, kept string) error {
	if prompt != "" {
		fmt.Fprint(out, prompt+" ")
	}
	fmt.Fprint(out, "Type yes to go on: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != "yes" {
		return exitcode.Aborted(fmt.Errorf("%s not confirmed: %s (answer yes, or pass --yes-i-am-sane-and-i-understand-what-i-am-doing when no one can answer)", operation, kept))
	}
	return nil
}
