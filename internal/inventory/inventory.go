// Package inventory is the set of machines an operation works on, known at run time: a static
// cluster's come from the command line, SSHHost documents or the state dir (the first master of
// an earlier run); a cloud cluster's are added by the infrastructure phases from Terraform's
// outputs, after the inventory was created. Phases read it when they run, never when the phase
// tree is built, so a condition such as "are there other masters" is decided then.
package inventory

import (
	"fmt"
	"net"
	"slices"
	"sync"
)

// Role is what a machine becomes in the cluster. It is the one role type of dhctl: node bundles,
// preflight minimums and the state dir's records all use it.
type Role string

const (
	Master Role = "master"
	Worker Role = "worker"
)

// ParseRole accepts "master" or "worker".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Master, Worker:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want master or worker", s)
}

// Host is one machine.
type Host struct {
	// SSH is how dhctl reaches the machine: "host" or "host:port" (IPv6 as "[addr]:port").
	SSH string `json:"ssh"`
	// IP is the node address other nodes reach it at.
	IP   string `json:"ip"`
	Role Role   `json:"role"`
	// Name is the machine's name when dhctl made it (a cloud VM); "" for static machines, whose
	// node name is the host name the machine reports.
	Name string `json:"name,omitempty"`
	// NodeGroup is the node group the machine belongs to ("master" for control-plane nodes).
	NodeGroup string `json:"nodeGroup,omitempty"`
}

// Inventory is safe for concurrent use: infrastructure phases add machines while others read.
type Inventory struct {
	mu    sync.Mutex
	hosts []Host // masters first (the first is the first master), then workers, in order added
}

// New returns an inventory of hosts, checked (see Add).
func New(hosts ...Host) (*Inventory, error) {
	inv := &Inventory{}
	for _, h := range hosts {
		if err := inv.Add(h); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// Add appends a machine. Every machine has an IP node address and a role, and no two share an
// address; adding the same machine again (same SSH and IP) is a no-op that updates its role.
func (inv *Inventory) Add(h Host) error {
	if net.ParseIP(h.IP) == nil {
		return fmt.Errorf("%s host %q: node address %q is not an IP address", roleOr(h.Role), h.SSH, h.IP)
	}
	if _, err := ParseRole(string(h.Role)); err != nil {
		return fmt.Errorf("host %q: %w", h.SSH, err)
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for i, o := range inv.hosts {
		if o.IP == h.IP {
			if o.SSH == h.SSH {
				inv.hosts[i] = h
				inv.sortLocked()
				return nil
			}
			return fmt.Errorf("host %q and host %q have the same node address %s: list every machine once", o.SSH, h.SSH, h.IP)
		}
	}
	inv.hosts = append(inv.hosts, h)
	inv.sortLocked()
	return nil
}

// sortLocked keeps masters before workers, each in the order they were added.
func (inv *Inventory) sortLocked() {
	slices.SortStableFunc(inv.hosts, func(a, b Host) int {
		if a.Role == b.Role {
			return 0
		}
		if a.Role == Master {
			return -1
		}
		return 1
	})
}

func roleOr(r Role) string {
	if r == "" {
		return "a"
	}
	return string(r)
}

// All returns every machine: masters first (the first is the first master), then workers.
func (inv *Inventory) All() []Host {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return slices.Clone(inv.hosts)
}

// Masters returns the control-plane machines; the first is the first master.
func (inv *Inventory) Masters() []Host { return inv.with(Master) }

// Workers returns the workers.
func (inv *Inventory) Workers() []Host { return inv.with(Worker) }

func (inv *Inventory) with(r Role) []Host {
	var out []Host
	for _, h := range inv.All() {
		if h.Role == r {
			out = append(out, h)
		}
	}
	return out
}

// FirstMaster is the machine kubeadm init runs on.
func (inv *Inventory) FirstMaster() (Host, bool) {
	m := inv.Masters()
	if len(m) == 0 {
		return Host{}, false
	}
	return m[0], true
}

// Len is the number of machines.
func (inv *Inventory) Len() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return len(inv.hosts)
}

// Lookup finds a machine by its SSH address.
func (inv *Inventory) Lookup(ssh string) (Host, bool) {
	for _, h := range inv.All() {
		if h.SSH == ssh {
			return h, true
		}
	}
	return Host{}, false
}

// NodeAddress is the IP part of an SSH address ("10.0.0.1:2222" → "10.0.0.1"); "" when the host
// is a name, whose node address must then be given.
func NodeAddress(ssh string) string {
	host := ssh
	if h, _, err := net.SplitHostPort(ssh); err == nil {
		host = h
	}
	if net.ParseIP(host) == nil {
		return ""
	}
	return host
}
