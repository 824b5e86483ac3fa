package ssh

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// TerminalPassphrasePrompt returns an Auth.PassphrasePrompt that asks on tty (usually os.Stdin)
// without echo, writing the question to w (usually os.Stderr). It refuses when tty is not a
// terminal, so a non-interactive run fails clearly instead of hanging.
func TerminalPassphrasePrompt(tty *os.File, w io.Writer) func(keyPath string) ([]byte, error) {
	return func(keyPath string) ([]byte, error) {
		fd := int(tty.Fd())
		if !term.IsTerminal(fd) {
			return nil, fmt.Errorf("the key is encrypted and there is no terminal to ask for its passphrase; give the passphrase in the configuration or use ssh-agent")
		}
		fmt.Fprintf(w, "Enter passphrase for key %s: ", keyPath)
		pass, err := term.ReadPassword(fd)
		fmt.Fprintln(w)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		return pass, nil
	}
}
