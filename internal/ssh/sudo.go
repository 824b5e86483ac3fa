package ssh

import (
	"context"
	"errors"
	"io"
)

// SudoMode is how a login user gets root.
type SudoMode string

const (
	SudoRoot         SudoMode = "root (no sudo needed)"
	SudoPasswordless SudoMode = "passwordless"
	SudoWithPassword SudoMode = "with password"
)

// CheckSudo finds out how commands with Command.Sudo will get root on the host, or why they
// cannot (the error wraps ErrSudoNotAllowed, ErrSudoPasswordRequired or ErrSudoPasswordIncorrect).
func (c *Client) CheckSudo(ctx context.Context) (SudoMode, error) {
	if c.cfg.User == "root" {
		return SudoRoot, nil
	}
	// sudo's refusal is the expected answer for a user with a sudo password: not an error to
	// show the operator (Quiet), only the outcome is.
	_, err := c.Run(ctx, Command{Cmd: "sudo -n true", Stdout: io.Discard, LogAs: "check passwordless sudo", Quiet: true})
	if err == nil {
		return SudoPasswordless, nil
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode < 0 {
		return "", err // not sudo's answer: the connection failed
	}
	// Ask again through the normal sudo path, which explains a refusal (and uses the password).
	// A refusal here is returned, explained: the error says it, the log need not repeat it.
	if _, err := c.Run(ctx, Command{Cmd: "true", Sudo: true, Stdout: io.Discard, LogAs: "check sudo", Quiet: true}); err != nil {
		return "", err
	}
	if c.cfg.SudoPassword == "" {
		return SudoPasswordless, nil // sudo -n failed at first but works now (e.g. a rule just added)
	}
	return SudoWithPassword, nil
}
