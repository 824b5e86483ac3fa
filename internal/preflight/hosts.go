package preflight

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// HostsOptions are what CheckHosts needs: the machines of an inventory and how to reach them.
type HostsOptions struct {
	// Hosts to check, in inventory order: the first is checked as the first master (the registry
	// is checked from it).
	Hosts []inventory.Host
	// Clients builds one (unconnected) SSH client per host, in order; the checks connect them.
	Clients func(hosts []string) ([]*ssh.Client, error)
	Cluster *config.Cluster
	// Images are the references the nodes will pull; the registry check asks for each of those on
	// the registry (nil: only access is checked).
	Images   []string
	Minimums map[inventory.Role]Minimums
	Skip     []string
	Log      *slog.Logger
	// Out receives the report table.
	Out io.Writer
}

// CheckHosts runs every check on every host, prints one report and fails when a check failed.
func CheckHosts(ctx context.Context, o HostsOptions) error {
	inputs, err := InputsFrom(o.Cluster)
	if err != nil {
		return exitcode.Usage(err)
	}
	if inputs.Registry != nil {
		inputs.Registry.Images = o.Images
	}
	if len(o.Hosts) == 0 {
		return exitcode.Usage(errors.New("no hosts to check: pass --ssh-host (repeatable; the first is the first master) or SSHHost documents with --connection-config"))
	}
	addrs := make([]string, len(o.Hosts))
	for i, h := range o.Hosts {
		addrs[i] = h.SSH
	}
	clients, err := o.Clients(addrs)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	targets := make([]Host, len(clients))
	for i, c := range clients {
		targets[i] = Host{Client: c, Role: o.Hosts[i].Role}
	}
	report, err := Run(ctx, Options{Hosts: targets, Inputs: inputs, Minimums: o.Minimums, Skip: o.Skip, Log: o.Log})
	if report != nil && o.Out != nil {
		report.Write(o.Out)
	}
	return err
}
