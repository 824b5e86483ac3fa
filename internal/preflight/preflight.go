// Package preflight checks, before anything is changed, that the machines can become a cluster:
// SSH and sudo work, the OS and architecture are supported, CPU, memory and disk meet the role's
// minimums, the ports the control plane needs are free, clocks agree, hostnames are unique and
// resolvable, node addresses fall inside internalNetworkCIDRs, the cluster's ranges do not
// overlap host networks, the registry answers from the first master with the given credentials,
// and no old cluster is left behind.
//
// Every check is named (the name is what --preflight-skip takes) and runs on every host its
// scope selects. Facts are gathered once per host with one read-only script over SSH; the checks
// are pure functions of those facts (plus the configuration), so they are unit-tested without
// SSH. All checks run, and one report lists every result; any failure fails the run. Nothing on
// the machines is changed.
package preflight

import (
	"fmt"
	"sort"
	"strings"
)

// Status is a check's outcome on one host.
type Status string

const (
	StatusOK      Status = "ok"
	StatusWarning Status = "warning"
	StatusFailed  Status = "FAILED"
	// StatusSkipped: the user skipped the check with --preflight-skip.
	StatusSkipped Status = "skipped"
	// StatusNotRun: the check could not run because the host's facts are missing (SSH failed).
	StatusNotRun Status = "not run"
)

// Result is a check's status and a message saying what was found and, when it is not ok, what
// to do about it.
type Result struct {
	Status  Status
	Message string
}

func ok(format string, args ...any) Result {
	return Result{StatusOK, fmt.Sprintf(format, args...)}
}

func warn(format string, args ...any) Result {
	return Result{StatusWarning, fmt.Sprintf(format, args...)}
}

func fail(format string, args ...any) Result {
	return Result{StatusFailed, fmt.Sprintf(format, args...)}
}

// Scope says on which hosts a check runs.
type Scope string

const (
	// ScopeHost: every host (optionally only some roles).
	ScopeHost Scope = "every host"
	// ScopeFirstMaster: only the first master (the first host).
	ScopeFirstMaster Scope = "first master"
)

// Check names, as --preflight-skip takes them.
const (
	CheckSSH             = "ssh"
	CheckSudo            = "sudo"
	CheckOS              = "os"
	CheckCPU             = "cpu"
	CheckMemory          = "memory"
	CheckDisk            = "disk"
	CheckPorts           = "ports"
	CheckTimeDrift       = "time-drift"
	CheckHostname        = "hostname"
	CheckInternalNetwork = "internal-network"
	CheckCIDROverlap     = "cidr-overlap"
	CheckRegistry        = "registry"
	CheckLeftovers       = "leftovers"
)

// CheckInfo describes one check for help texts and the report.
type CheckInfo struct {
	Name  string
	Title string
	Scope Scope
	// Skippable is false only for ssh: every other check runs over it.
	Skippable bool
}

// catalog lists every check in report order.
var catalog = []CheckInfo{
	{CheckSSH, "SSH reachable, login works", ScopeHost, false},
	{CheckSudo, "sudo works for the login user", ScopeHost, true},
	{CheckOS, "OS and architecture supported", ScopeHost, true},
	{CheckCPU, "CPU count meets the role's minimum", ScopeHost, true},
	{CheckMemory, "memory meets the role's minimum", ScopeHost, true},
	{CheckDisk, "free disk on /var/lib meets the role's minimum", ScopeHost, true},
	{CheckPorts, "ports the role needs are free", ScopeHost, true},
	{CheckTimeDrift, "clock agrees with the operator's", ScopeHost, true},
	{CheckHostname, "hostname valid, unique and resolvable on the host", ScopeHost, true},
	{CheckInternalNetwork, "an address inside internalNetworkCIDRs", ScopeHost, true},
	{CheckCIDROverlap, "pod and service ranges do not overlap host networks", ScopeHost, true},
	{CheckLeftovers, "no leftovers of an earlier cluster", ScopeHost, true},
	{CheckRegistry, "registry reachable with the credentials", ScopeFirstMaster, true},
}

// Checks returns every check, in report order.
func Checks() []CheckInfo { return append([]CheckInfo(nil), catalog...) }

// SkippableNames are the names --preflight-skip accepts, sorted.
func SkippableNames() []string {
	var names []string
	for _, c := range catalog {
		if c.Skippable {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	return names
}

// ValidateSkip checks names given to --preflight-skip; the error lists the valid names.
func ValidateSkip(names []string) error {
	valid := SkippableNames()
	for _, n := range names {
		if n == CheckSSH {
			return fmt.Errorf("--preflight-skip %s: the ssh check cannot be skipped, every other check runs over SSH; valid names: %s",
				n, strings.Join(valid, ", "))
		}
		if !contains(valid, n) {
			return fmt.Errorf("--preflight-skip %q: no such check; valid names: %s", n, strings.Join(valid, ", "))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
