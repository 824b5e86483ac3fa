package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/logging"
	"github.com/dhctl-dev/dhctl/internal/session"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// openSession loads the configuration (required when needConfig, else only what was given),
// locks the cluster's state dir and starts the logger: what every operation on a cluster needs.
func openSession(cmd *cobra.Command, opts *globalOptions, needConfig bool, require ...config.Requirement) (*session.Session, error) {
	format, err := logging.ParseFormat(opts.LogFormat)
	if err != nil {
		return nil, err
	}
	var cluster *config.Cluster
	if needConfig || len(opts.ConfigPaths)+len(opts.ConnectionConfigPaths) > 0 {
		if cluster, err = loadConfig(cmd, opts, needConfig, require...); err != nil {
			return nil, err
		}
	}
	agentSocket, _ := opts.lookupEnv("SSH_AUTH_SOCK")
	// Asked only for an encrypted key given without its passphrase, and only with a terminal.
	prompt := func(keyPath string) ([]byte, error) {
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("no terminal to ask for the passphrase (%w); give it in SSHConfig or add the key to ssh-agent", err)
		}
		defer tty.Close()
		return ssh.TerminalPassphrasePrompt(tty, cmd.ErrOrStderr())(keyPath)
	}
	return session.Open(cmd.Context(), session.Options{
		StateRoot:   opts.StateDir,
		ClusterName: opts.ClusterName,
		Command:     cmd.Name(),
		LogFormat:   format,
		Out:         cmd.ErrOrStderr(),
		Config:      cluster,
		LookupEnv:   opts.lookupEnv,
		SSH: session.SSHOptions{
			Hosts:            opts.SSH.Hosts,
			User:             opts.SSH.User,
			Port:             int(opts.SSH.Port),
			KeyFiles:         opts.SSH.AgentPrivateKeys,
			AgentSocket:      agentSocket,
			BastionHost:      opts.SSH.BastionHost,
			BastionPort:      int(opts.SSH.BastionPort),
			BastionUser:      opts.SSH.BastionUser,
			IgnoreHostKeys:   opts.SSH.InsecureIgnoreHostKeys,
			KnownHostsFile:   opts.SSH.KnownHostsFile,
			ConnectTimeout:   opts.SSH.ConnectTimeout,
			PassphrasePrompt: prompt,
		},
	})
}
