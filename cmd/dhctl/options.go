package main

import (
	"time"

	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// globalOptions are the flags every command accepts. Names follow Deckhouse's dhctl where it has
// them, so its users feel at home; each flag also reads DHCTL_<NAME> from the environment.
type globalOptions struct {
	ConfigPaths           []string
	ResourcePaths         []string
	ConnectionConfigPaths []string
	StateDir              string
	ClusterName           string
	LogFormat             string
	Sane                  bool // --yes-i-am-sane-and-i-understand-what-i-am-doing: skip confirmations
	SSH                   sshOptions

	// lookupEnv reads the environment (documents may be templates over it); injected so tests
	// run commands in-process with an environment of their own.
	lookupEnv func(string) (string, bool)
}

// sshOptions describe how to reach the machines; SSHConfig/SSHHost documents from
// --connection-config fill whatever these leave empty.
type sshOptions struct {
	Hosts            []string
	User             string
	Port             ssh.Port
	AgentPrivateKeys []string
	BastionHost      string
	BastionPort      ssh.Port
	BastionUser      string
	// InsecureIgnoreHostKeys turns host key checking off. It exists for throwaway labs; dhctl warns
	// every time it is used.
	InsecureIgnoreHostKeys bool
	KnownHostsFile         string
	ConnectTimeout         time.Duration
}
