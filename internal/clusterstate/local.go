// Package clusterstate owns a cluster's state, both halves:
//
//   - Local: what the operator's machine keeps in the cluster's state dir (internal/state): the
//     join data of the first master, the settings kubeadm init fixed, the hosts dhctl changed,
//     the completion mark, the cluster UUID, the admin kubeconfig, pinned host keys and the
//     Terraform states (base infrastructure and one per node). No other package spells a file
//     name of the state dir: they call the typed accessors here.
//   - In the cluster: the Secrets and ConfigMap under the names and keys Deckhouse uses
//     (Objects writes them, Read returns one Snapshot of them), which converge and destroy start
//     from, so the truth about a running cluster never lives only on a laptop.
package clusterstate

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/ssh"
	"github.com/dhctl-dev/dhctl/internal/state"
)

// Files of the state dir, relative to it. Only this package names them.
const (
	joinFile       = "node/join.json"      // secret: bootstrap token, certificate key
	hostsFile      = "node/hosts.json"     // every host a node bundle ran on: what abort cleans
	initFile       = "bootstrap/init.json" // what kubeadm init fixed
	completedFile  = "bootstrap-completed.json"
	uuidFile       = "cluster-uuid"
	kubeconfigFile = "kubeconfig" // secret: the admin kubeconfig
	packagesDir    = "packages"   // cache of the packages endpoint
	checkpointsDir = "checkpoints"
	terraformDir   = "terraform" // terraform/<step>.tfstate, secret
	terraformWork  = "terraform-work"
	machinesFile   = "infra/machines.json"       // the machines the infrastructure made
	discoveryFile  = "infra/discovery-data.json" // the provider's discovery data
	destroyFile    = "destroy/resources-deleted.json"
)

// What a new bootstrap on the same machines must not find after an abort: phase checkpoints
// (they would skip the phases), the first master's join data and secrets (node/, which holds the
// touched hosts too), the settings of the removed control plane, its admin kubeconfig and the
// completion mark. Pinned host keys, the UUID, logs and the packages cache stay: the machines and
// the packages are the same. A cloud cluster's machine records, discovery data and engine work
// dirs go too (its machines were destroyed); its Terraform states went with each step. So does
// a destroy's progress.
var forgottenAfterAbort = []string{checkpointsDir, "node", "bootstrap", kubeconfigFile, completedFile, "infra", terraformWork, "destroy"}

// Local is the state dir half of a cluster's state. It is safe for concurrent use: writes of
// the touched-hosts record take turns, every write is atomic (see internal/state).
type Local struct {
	dir *state.Dir
	// hostsMu serialises read-modify-write of the touched-hosts record (workers join in parallel).
	hostsMu sync.Mutex
}

// NewLocal wraps an open, locked state dir.
func NewLocal(dir *state.Dir) *Local { return &Local{dir: dir} }

// Path is the state dir.
func (l *Local) Path() string { return l.dir.Path() }

// Dir is the underlying state dir (for the phase runner's checkpoints and the logs).
func (l *Local) Dir() *state.Dir { return l.dir }

// KubeconfigPath is where the admin kubeconfig is kept (0600).
func (l *Local) KubeconfigPath() string { return filepath.Join(l.dir.Path(), kubeconfigFile) }

// PackagesCacheDir is the packages endpoint's cache.
func (l *Local) PackagesCacheDir() string { return filepath.Join(l.dir.Path(), packagesDir) }

// PinnedHostKeysPath is the known_hosts file of keys pinned on first use.
func (l *Local) PinnedHostKeysPath() string {
	return filepath.Join(l.dir.Path(), ssh.PinnedHostsFileName)
}

// UnpinHost forgets the host keys pinned for host: its machine was destroyed, and the one made
// in its place has keys of its own.
func (l *Local) UnpinHost(host string) error { return ssh.Unpin(l.dir.Path(), host) }

// readJSON decodes name into v; it reports false when the file does not exist.
func (l *Local) readJSON(name string, v any, damaged string) (bool, error) {
	data, err := l.dir.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state %s: %w", filepath.Join(l.dir.Path(), name), err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("state %s is damaged (%v): %s", filepath.Join(l.dir.Path(), name), err, damaged)
	}
	return true, nil
}

func (l *Local) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return l.dir.WriteFile(name, append(data, '\n'))
}

// Join is what the first master's bundle leaves for the nodes that join later. Token and
// certificate key are secret.
type Join struct {
	// MasterHost is the first master as dhctl reaches it over SSH ("host" or "host:port").
	MasterHost string           `json:"masterHost,omitempty"`
	MasterIP   string           `json:"masterIP"`
	Join       kubeadm.JoinInfo `json:"join"`
	Secrets    kubeadm.Secrets  `json:"secrets"`
}

// Ready reports whether the first master finished: other nodes can join with it.
func (j Join) Ready() bool { return j.MasterIP != "" && j.Join.Token != "" }

// Join returns the join data; the zero value when the first master was never started.
func (l *Local) Join() (Join, error) {
	var j Join
	_, err := l.readJSON(joinFile, &j, "restore it, or abort the bootstrap and start over")
	return j, err
}

// SaveJoin replaces the join data.
func (l *Local) SaveJoin(j Join) error { return l.writeJSON(joinFile, j) }

// InitSettings are what kubeadm init fixes for the cluster's life: a later run with other values
// would leave nodes and the control plane disagreeing.
type InitSettings struct {
	PodSubnetCIDR     string `json:"podSubnetCIDR"`
	ServiceSubnetCIDR string `json:"serviceSubnetCIDR"`
	ClusterDomain     string `json:"clusterDomain"`
	KubernetesVersion string `json:"kubernetesVersion"` // minor, resolved
}

// InitSettings returns the settings recorded when kubeadm init was started, or nil when it never
// was.
func (l *Local) InitSettings() (*InitSettings, error) {
	var s InitSettings
	found, err := l.readJSON(initFile, &s, "restore it, or abort the bootstrap and start over")
	if err != nil || !found {
		return nil, err
	}
	return &s, nil
}

// SaveInitSettings records the settings kubeadm init is about to fix.
func (l *Local) SaveInitSettings(s InitSettings) error { return l.writeJSON(initFile, s) }

// TouchedHost is a host dhctl ran (or started) the node bundle on.
type TouchedHost struct {
	Host      string    `json:"host"` // as dhctl reaches it over SSH (may carry ":port")
	Role      string    `json:"role"`
	FirstSeen time.Time `json:"firstSeen"`
}

type hostsRecord struct {
	Hosts []TouchedHost `json:"hosts"`
}

// RecordHost adds host to the touched hosts (keeping when it was first seen), BEFORE anything
// runs on it, so that a cleanup after any failure knows to clean it.
func (l *Local) RecordHost(host, role string, now time.Time) error {
	l.hostsMu.Lock()
	defer l.hostsMu.Unlock()
	hosts, err := l.TouchedHosts()
	if err != nil {
		return err
	}
	for i, h := range hosts {
		if h.Host == host {
			if h.Role == role {
				return nil
			}
			hosts[i].Role = role
			return l.writeHosts(hosts)
		}
	}
	return l.writeHosts(append(hosts, TouchedHost{Host: host, Role: role, FirstSeen: now.UTC()}))
}

// TouchedHosts returns the recorded hosts in the order they were first touched.
func (l *Local) TouchedHosts() ([]TouchedHost, error) {
	var r hostsRecord
	_, err := l.readJSON(hostsFile, &r, "fix or delete it, and name the hosts to clean with --ssh-host")
	return r.Hosts, err
}

func (l *Local) writeHosts(hosts []TouchedHost) error {
	sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].FirstSeen.Before(hosts[j].FirstSeen) })
	return l.writeJSON(hostsFile, hostsRecord{Hosts: hosts})
}

// ForgetHosts updates the record after a cleanup: the cleaned hosts leave it and the hosts that
// were not cleaned join it (role "unknown" if they were not recorded), so a re-run finds them.
// Once no host is left, everything a new bootstrap must not find is removed; reset says so.
func (l *Local) ForgetHosts(cleaned, notCleaned []string, now time.Time) (reset bool, err error) {
	l.hostsMu.Lock()
	defer l.hostsMu.Unlock()
	hosts, err := l.TouchedHosts()
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
		return false, l.writeHosts(left)
	}
	for _, name := range forgottenAfterAbort {
		if err := l.dir.RemoveAll(name); err != nil {
			return false, err
		}
	}
	return true, nil
}

type completedRecord struct {
	At time.Time `json:"at"`
}

// MarkCompleted records that the bootstrap finished, so that abort does not remove a cluster in
// use by mistake.
func (l *Local) MarkCompleted(at time.Time) error {
	return l.writeJSON(completedFile, completedRecord{At: at.UTC()})
}

// Completed reports whether the bootstrap was marked finished, and when.
func (l *Local) Completed() (bool, time.Time, error) {
	var r completedRecord
	found, err := l.readJSON(completedFile, &r, "")
	if err != nil && found {
		// Unreadable but present: the safe answer is "finished".
		return true, time.Time{}, nil
	}
	return found, r.At, err
}

// MarkResourcesDeleted records that a destroy deleted the cluster's own objects and goes on with
// its machines: a re-run after an interruption leaves the API server alone (its control plane may
// be half torn down by then).
func (l *Local) MarkResourcesDeleted(at time.Time) error {
	return l.writeJSON(destroyFile, completedRecord{At: at.UTC()})
}

// ResourcesDeleted reports whether a destroy deleted the cluster's objects, and when.
func (l *Local) ResourcesDeleted() (bool, time.Time, error) {
	var r completedRecord
	found, err := l.readJSON(destroyFile, &r, "remove it to have destroy delete the cluster's objects again")
	return found, r.At, err
}

// uuidPattern is the canonical textual form of a UUID.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ClusterUUID returns the cluster's UUID, making and saving a random one on first use, so every
// run on one cluster (and the d8-cluster-uuid ConfigMap) agrees.
func (l *Local) ClusterUUID() (string, error) {
	data, err := l.dir.ReadFile(uuidFile)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if !uuidPattern.MatchString(id) {
			return "", fmt.Errorf("state %s: %q is not a UUID; restore it from the cluster's kube-system/%s ConfigMap",
				filepath.Join(l.dir.Path(), uuidFile), id, UUIDConfigMap)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	id, err := NewUUID()
	if err != nil {
		return "", err
	}
	if err := l.dir.WriteFile(uuidFile, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

// AdoptClusterUUID records id, the UUID the cluster keeps (kube-system/d8-cluster-uuid), in a
// state dir that has none: a state dir made on another machine than the bootstrap's. A state
// dir with another UUID belongs to another cluster: an error, and nothing is changed.
func (l *Local) AdoptClusterUUID(id string) error {
	if !uuidPattern.MatchString(id) {
		return fmt.Errorf("the cluster's %s/%s holds %q, not a lower-case UUID", ConfigNamespace, UUIDConfigMap, id)
	}
	data, err := l.dir.ReadFile(uuidFile)
	switch {
	case err == nil:
		if have := strings.TrimSpace(string(data)); have != id {
			return fmt.Errorf("the state dir %s belongs to cluster %s, but the cluster reached is %s: give the --state-dir and --cluster-name of this cluster (or a new --cluster-name)", l.dir.Path(), have, id)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return l.dir.WriteFile(uuidFile, []byte(id+"\n"))
	default:
		return err
	}
}

// NewUUID is a random (version 4) UUID.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// SaveKubeconfig keeps the admin kubeconfig (0600).
func (l *Local) SaveKubeconfig(data []byte) error { return l.dir.WriteFile(kubeconfigFile, data) }

// Kubeconfig returns the admin kubeconfig; nil when none was saved.
func (l *Local) Kubeconfig() ([]byte, error) {
	data, err := l.dir.ReadFile(kubeconfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// Terraform steps whose states are kept: the base infrastructure, and one per node.
const BaseInfrastructure = "base-infrastructure"

var stepName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?$`)

func terraformFile(step string) (string, error) {
	if !stepName.MatchString(step) {
		return "", fmt.Errorf("terraform state: step name %q is not a lower-case DNS label", step)
	}
	return terraformDir + "/" + step + ".tfstate", nil
}

// SaveTerraformState replaces the state of a Terraform step ("base-infrastructure" or a node's
// name), atomically. It is called while apply runs, every time the engine writes its state.
func (l *Local) SaveTerraformState(step string, data []byte) error {
	name, err := terraformFile(step)
	if err != nil {
		return err
	}
	return l.dir.WriteFile(name, data)
}

// TerraformState returns the saved state of a step; nil when there is none.
func (l *Local) TerraformState(step string) ([]byte, error) {
	name, err := terraformFile(step)
	if err != nil {
		return nil, err
	}
	data, err := l.dir.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// RemoveTerraformState forgets a step's state (after its infrastructure was destroyed).
func (l *Local) RemoveTerraformState(step string) error {
	name, err := terraformFile(step)
	if err != nil {
		return err
	}
	return l.dir.Remove(name)
}

// TerraformSteps lists the steps with a saved state, sorted.
func (l *Local) TerraformSteps() ([]string, error) {
	entries, err := l.dir.ReadDir(terraformDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if step, ok := strings.CutSuffix(e.Name(), ".tfstate"); ok && !e.IsDir() && stepName.MatchString(step) {
			out = append(out, step)
		}
	}
	sort.Strings(out)
	return out, nil
}

// TerraformWorkRoot is where the engine's working directories live (one per step; they hold
// variables with secrets, so they stay inside the 0700 state dir).
func (l *Local) TerraformWorkRoot() string { return filepath.Join(l.dir.Path(), terraformWork) }

// Machine is a machine the infrastructure made, as its step's outputs describe it: what the
// inventory of a later run (or another command) starts from.
type Machine struct {
	Name      string `json:"name"`
	NodeGroup string `json:"nodeGroup"`
	Role      string `json:"role"`
	SSH       string `json:"ssh"` // how dhctl reaches it
	IP        string `json:"ip"`  // its node address
	// Index and Settings are its replica's index and its group's settings when it was made: a
	// machine the configuration no longer asks for is destroyed with them.
	Index    int             `json:"index"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// MachineOf is the record of machine h, replica index of a group with settings.
func MachineOf(h inventory.Host, index int, settings json.RawMessage) Machine {
	return Machine{Name: h.Name, NodeGroup: h.NodeGroup, Role: string(h.Role), SSH: h.SSH, IP: h.IP, Index: index, Settings: settings}
}

type machinesRecord struct {
	Machines []Machine `json:"machines"`
}

// Machines returns the recorded machines, sorted by name.
func (l *Local) Machines() ([]Machine, error) {
	var r machinesRecord
	_, err := l.readJSON(machinesFile, &r, "delete it: the next run reads the machines from the infrastructure's outputs again")
	return r.Machines, err
}

// RecordMachine adds or replaces (by name) a machine.
func (l *Local) RecordMachine(m Machine) error {
	l.hostsMu.Lock()
	defer l.hostsMu.Unlock()
	ms, err := l.Machines()
	if err != nil {
		return err
	}
	out := []Machine{m}
	for _, o := range ms {
		if o.Name != m.Name {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return l.writeJSON(machinesFile, machinesRecord{Machines: out})
}

// ForgetMachine removes a machine whose infrastructure was destroyed.
func (l *Local) ForgetMachine(name string) error {
	l.hostsMu.Lock()
	defer l.hostsMu.Unlock()
	ms, err := l.Machines()
	if err != nil {
		return err
	}
	var out []Machine
	for _, o := range ms {
		if o.Name != name {
			out = append(out, o)
		}
	}
	return l.writeJSON(machinesFile, machinesRecord{Machines: out})
}

// SaveDiscoveryData keeps the provider's discovery data (from the base infrastructure).
func (l *Local) SaveDiscoveryData(data []byte) error { return l.dir.WriteFile(discoveryFile, data) }

// DiscoveryData returns the saved discovery data; nil when there is none.
func (l *Local) DiscoveryData() ([]byte, error) {
	data, err := l.dir.ReadFile(discoveryFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
