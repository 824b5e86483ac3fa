package abort

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/dhctl-dev/dhctl/internal/state"
)

// Files of the state dir this package keeps. They are small and additive: other operations
// write them through RecordHost and MarkCompleted and never read them.
const (
	// HostsFile lists every host a node bundle was run on: what abort must clean.
	HostsFile = "node/hosts.json"
	// CompletedFile says the bootstrap finished: abort then refuses unless forced.
	CompletedFile = "bootstrap-completed.json"
)

// What a new bootstrap must not find after an abort: phase checkpoints (they would skip the
// phases), the first master's join data and secrets (node/, which holds HostsFile too), the admin
// kubeconfig of the removed cluster and the completion mark. Pinned host keys, logs and the
// packages cache stay: the machines and the packages are the same.
var forgottenAfterAbort = []string{"checkpoints", "node", "kubeconfig", CompletedFile}

// TouchedHost is a host dhctl ran the node bundle on.
type TouchedHost struct {
	Host      string    `json:"host"` // as given to --ssh-host (may carry ":port")
	Role      string    `json:"role"`
	FirstSeen time.Time `json:"firstSeen"`
}

type hostsRecord struct {
	Hosts []TouchedHost `json:"hosts"`
}

// RecordHost adds host to the state dir's list of touched hosts (keeping the first time it was
// seen), BEFORE anything runs on it, so that an abort after any failure knows to clean it.
func RecordHost(d *state.Dir, host, role string, now time.Time) error {
	hosts, err := TouchedHosts(d)
	if err != nil {
		return err
	}
	for i, h := range hosts {
		if h.Host == host {
			if h.Role == role {
				return nil
			}
			hosts[i].Role = role
			return writeHosts(d, hosts)
		}
	}
	return writeHosts(d, append(hosts, TouchedHost{Host: host, Role: role, FirstSeen: now.UTC()}))
}

// TouchedHosts returns the recorded hosts in the order they were first touched; none when nothing
// was recorded.
func TouchedHosts(d *state.Dir) ([]TouchedHost, error) {
	data, err := d.ReadFile(HostsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", HostsFile, err)
	}
	var r hostsRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("state %s/%s is not valid (%v): fix or delete it, and name the hosts to clean with --ssh-host", d.Path(), HostsFile, err)
	}
	return r.Hosts, nil
}

func writeHosts(d *state.Dir, hosts []TouchedHost) error {
	sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].FirstSeen.Before(hosts[j].FirstSeen) })
	data, err := json.MarshalIndent(hostsRecord{Hosts: hosts}, "", "  ")
	if err != nil {
		return err
	}
	if err := d.WriteFile(HostsFile, append(data, '\n')); err != nil {
		return fmt.Errorf("state %s: %w", HostsFile, err)
	}
	return nil
}

type completedRecord struct {
	At time.Time `json:"at"`
}

// MarkCompleted records that the bootstrap of this cluster finished (called by the bootstrap as
// its last act), so that abort does not remove a cluster in use by mistake.
func MarkCompleted(d *state.Dir, at time.Time) error {
	data, err := json.Marshal(completedRecord{At: at.UTC()})
	if err != nil {
		return err
	}
	return d.WriteFile(CompletedFile, append(data, '\n'))
}

// Completed reports whether the bootstrap was marked finished, and when.
func Completed(d *state.Dir) (bool, time.Time, error) {
	data, err := d.ReadFile(CompletedFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("state %s: %w", CompletedFile, err)
	}
	var r completedRecord
	if err := json.Unmarshal(data, &r); err != nil {
		// Unreadable but present: the safe answer is "finished".
		return true, time.Time{}, nil
	}
	return true, r.At, nil
}

// Forget updates the state dir after an abort: the cleaned hosts leave the record and the hosts
// that were not cleaned join it (with the role "unknown" if they were not recorded), so a re-run
// of abort finds them without --ssh-host. Once no host is left to clean, everything a new
// bootstrap must not find is removed (see forgottenAfterAbort). It returns whether the state was
// reset.
func Forget(d *state.Dir, cleaned, notCleaned []string, now time.Time) (reset bool, err error) {
	hosts, err := TouchedHosts(d)
	if err != nil {
		return false, err
	}
	done := map[string]bool{}
	for _, h := range cleaned {
		done[h] = true
	}
	var left []TouchedHost
	known := map[string]bool{}
	for _, h := range hosts {
		if !done[h.Host] {
			left = append(left, h)
			known[h.Host] = true
		}
	}
	for _, h := range notCleaned {
		if !known[h] {
			known[h] = true
			left = append(left, TouchedHost{Host: h, Role: "unknown", FirstSeen: now.UTC()})
		}
	}
	if len(left) > 0 {
		return false, writeHosts(d, left)
	}
	for _, name := range forgottenAfterAbort {
		if err := d.RemoveAll(name); err != nil {
			return false, err
		}
	}
	return true, nil
}
