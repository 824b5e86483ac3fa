package ssh

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/dhctl-dev/dhctl/internal/atomicfile"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"
)

// HostKeyMode selects how host keys are verified.
type HostKeyMode string

const (
	// HostKeysTrustOnFirstUse (the default) accepts a key listed in the user's known_hosts or
	// pinned in the state dir; an unknown host's key is pinned; a changed key is refused.
	HostKeysTrustOnFirstUse HostKeyMode = "tofu"
	// HostKeysStrict is like trust-on-first-use but refuses unknown hosts instead of pinning.
	HostKeysStrict HostKeyMode = "strict"
	// HostKeysInsecureIgnore accepts any key (logged as a warning on every connection).
	HostKeysInsecureIgnore HostKeyMode = "off"
)

// PinnedHostsFileName is the file, inside HostKeyPolicy.StateDir, holding pinned host keys in
// OpenSSH known_hosts format.
const PinnedHostsFileName = "known_hosts"

// HostKeyPolicy says how host keys are verified, for the target and the bastion alike.
type HostKeyPolicy struct {
	// Mode defaults to HostKeysTrustOnFirstUse.
	Mode HostKeyMode
	// StateDir is the cluster's state dir; keys are pinned in StateDir/known_hosts (0600).
	StateDir string
	// UserKnownHostsFile (usually ~/.ssh/known_hosts) is honoured when it lists the host; a
	// missing file is fine. It is only read, never written.
	UserKnownHostsFile string
	// Pins, when set (NewPinStore(StateDir)), is shared by the clients of a run so that pins of
	// many new hosts are written in batches. Optional.
	Pins *PinStore
}

// HostKeySource tells how a host key was accepted.
type HostKeySource string

const (
	HostKeyFromKnownHosts HostKeySource = "known_hosts"  // listed in the user's known_hosts
	HostKeyPinned         HostKeySource = "pinned"       // already pinned in the state dir
	HostKeyNewlyPinned    HostKeySource = "newly-pinned" // first contact, pinned now
	HostKeyUnchecked      HostKeySource = "unchecked"    // checking turned off
)

// HostKeyStatus is the outcome of verifying one host's key.
type HostKeyStatus struct {
	Address     string // host:port as dialled
	Fingerprint string // SHA256:...
	Source      HostKeySource
}

// HostKeyChangedError is returned when a host presents a key different from the one on record.
type HostKeyChangedError struct {
	Address  string
	Want     []string // fingerprints on record
	Got      string   // fingerprint presented
	File     string   // where the recorded key lives
	HowToFix string
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key for %s CHANGED: on record in %s: %s; presented now: %s. "+
		"Someone could be intercepting the connection, or the host was reinstalled. %s",
		e.Address, e.File, strings.Join(e.Want, ", "), e.Got, e.HowToFix)
}

// hostKeyVerifier implements the policy for one connection attempt and remembers the outcome.
type hostKeyVerifier struct {
	policy HostKeyPolicy

	mu     sync.Mutex
	status HostKeyStatus
}

func (v *hostKeyVerifier) result() HostKeyStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

func (v *hostKeyVerifier) callback(address string, remote net.Addr, key ssh.PublicKey) error {
	status, err := v.verify(address, remote, key)
	v.mu.Lock()
	v.status = status
	v.mu.Unlock()
	return err
}

func (v *hostKeyVerifier) verify(address string, remote net.Addr, key ssh.PublicKey) (HostKeyStatus, error) {
	status := HostKeyStatus{Address: address, Fingerprint: ssh.FingerprintSHA256(key)}
	if v.policy.Mode == HostKeysInsecureIgnore {
		status.Source = HostKeyUnchecked
		return status, nil
	}

	if f := v.policy.UserKnownHostsFile; f != "" {
		known, err := checkKnownHostsFile(f, address, remote, key)
		if err != nil {
			return status, err
		}
		if known {
			status.Source = HostKeyFromKnownHosts
			return status, nil
		}
	}

	if v.policy.StateDir == "" {
		return status, fmt.Errorf("host key %s of %s is not in %s and no state dir is set to pin it; add the host to known_hosts or give a state dir",
			status.Fingerprint, address, v.policy.UserKnownHostsFile)
	}
	pinned := filepath.Join(v.policy.StateDir, PinnedHostsFileName)
	known, err := checkKnownHostsFile(pinned, address, remote, key)
	if err != nil {
		return status, err
	}
	if known {
		status.Source = HostKeyPinned
		return status, nil
	}
	if v.policy.Mode == HostKeysStrict {
		return status, fmt.Errorf("host key %s of %s is unknown and strict host key checking is on; verify the fingerprint out of band, then add it to %s or %s",
			status.Fingerprint, address, v.policy.UserKnownHostsFile, pinned)
	}
	pins := v.policy.Pins
	if pins == nil || pins.dir != v.policy.StateDir {
		pins = NewPinStore(v.policy.StateDir)
	}
	if err := pins.pin(address, remote, key); err != nil {
		return status, err
	}
	status.Source = HostKeyNewlyPinned
	return status, nil
}

// checkKnownHostsFile reports whether file lists address with key. A different key on record is
// a *HostKeyChangedError; a missing file means "not listed".
func checkKnownHostsFile(file, address string, remote net.Addr, key ssh.PublicKey) (bool, error) {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return false, fmt.Errorf("read known hosts file %s: %w; fix or remove the broken line", file, err)
	}
	err = cb(address, remote, key)
	if err == nil {
		return true, nil
	}
	var keyErr *knownhosts.KeyError
	if errors.As(err, &keyErr) {
		if len(keyErr.Want) == 0 {
			return false, nil
		}
		changed := &HostKeyChangedError{Address: address, Got: ssh.FingerprintSHA256(key), File: file}
		for _, w := range keyErr.Want {
			changed.Want = append(changed.Want, ssh.FingerprintSHA256(w.Key))
		}
		changed.HowToFix = fmt.Sprintf("If the change is expected, remove the old key with `ssh-keygen -R '%s' -f '%s'` and connect again.",
			knownhosts.Normalize(address), file)
		return false, changed
	}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		return false, fmt.Errorf("host key %s of %s is marked @revoked in %s; refusing to connect", ssh.FingerprintSHA256(key), address, file)
	}
	return false, fmt.Errorf("check host key of %s against %s: %w", address, file, err)
}

// PinStore writes pinned host keys into one state dir, batching concurrent pins (e.g. a fan-out's
// first contact with 50 new hosts) into one atomic rewrite and fsync instead of one per host.
// Share one store among all clients of a run through HostKeyPolicy.Pins; without one, each
// pin is written on its own. Safe for concurrent use, and across processes (flock).
type PinStore struct {
	dir string

	mu      sync.Mutex
	pending []*pinRequest
	writing bool
}

type pinRequest struct {
	address string
	remote  net.Addr
	key     ssh.PublicKey
	err     error
	done    chan struct{}
}

// NewPinStore returns a store for dir/known_hosts.
func NewPinStore(dir string) *PinStore { return &PinStore{dir: dir} }

// pin records address's key. The first caller to find no write in progress becomes the writer
// and keeps writing batches until none is pending; the others wait for their batch.
func (s *PinStore) pin(address string, remote net.Addr, key ssh.PublicKey) error {
	req := &pinRequest{address: address, remote: remote, key: key, done: make(chan struct{})}
	s.mu.Lock()
	s.pending = append(s.pending, req)
	if s.writing {
		s.mu.Unlock()
		<-req.done
		return req.err
	}
	s.writing = true
	for len(s.pending) > 0 {
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		pinBatch(s.dir, batch)
		for _, r := range batch {
			close(r.done)
		}
		s.mu.Lock()
	}
	s.writing = false
	s.mu.Unlock()
	<-req.done
	return req.err
}

// pinBatch appends the keys of batch to dir/known_hosts in one atomic rewrite (temp file, fsync,
// rename) under an flock, so concurrent pins, even from other processes, are not lost. Each
// request is re-checked under the lock: a different key on record (or earlier in the batch) for
// the same host is a change, not a pin.
func pinBatch(dir string, batch []*pinRequest) {
	fail := func(err error) {
		for _, r := range batch {
			if r.err == nil {
				r.err = fmt.Errorf("pin host key of %s: %w", r.address, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
		return
	}
	file := filepath.Join(dir, PinnedHostsFileName)
	lock, err := os.OpenFile(file+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fail(err)
		return
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		fail(fmt.Errorf("lock %s: %w", lock.Name(), err))
		return
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it anyway

	var lines []string
	added := map[string]*pinRequest{} // normalized address -> request pinned in this batch
	for _, r := range batch {
		norm := knownhosts.Normalize(r.address)
		if prev, ok := added[norm]; ok {
			if !keyEqual(prev.key, r.key) {
				r.err = &HostKeyChangedError{Address: r.address, Want: []string{ssh.FingerprintSHA256(prev.key)},
					Got: ssh.FingerprintSHA256(r.key), File: file,
					HowToFix: "Two connections to the same address saw different keys at the same time; retry and check the network."}
			}
			continue
		}
		known, err := checkKnownHostsFile(file, r.address, r.remote, r.key)
		if err != nil {
			r.err = err
			continue
		}
		if !known {
			added[norm] = r
			lines = append(lines, knownhosts.Line([]string{norm}, r.key))
		}
	}
	if len(lines) == 0 {
		return
	}
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fail(err)
		return
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	data := append(old, strings.Join(lines, "\n")+"\n"...)
	if err := atomicfile.Write(file, data, 0o600); err != nil {
		fail(err)
	}
}

// Unpin removes the keys pinned in dir/known_hosts for host (any port): the machine at that
// address was destroyed, and the one made in its place has keys of its own. Under the pins'
// flock, in one atomic rewrite.
func Unpin(dir, host string) error {
	file := filepath.Join(dir, PinnedHostsFileName)
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lock, err := os.OpenFile(file+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it anyway
	old, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var kept []string
	removed := false
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if pinnedFor(line, host) {
			removed = true
			continue
		}
		kept = append(kept, line)
	}
	if !removed {
		return nil
	}
	data := ""
	if len(kept) > 0 {
		data = strings.Join(kept, "\n") + "\n"
	}
	return atomicfile.Write(file, []byte(data), 0o600)
}

// pinnedFor reports whether a known_hosts line is for host, on any port.
func pinnedFor(line, host string) bool {
	fields := strings.Fields(line)
	if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
		return false
	}
	for _, h := range strings.Split(fields[0], ",") {
		if h == host || (strings.HasPrefix(h, "["+host+"]:")) {
			return true
		}
	}
	return false
}

func keyEqual(a, b ssh.PublicKey) bool {
	return string(a.Marshal()) == string(b.Marshal())
}

// knownHostKeyAlgorithms lists the host key algorithms of the keys on record for address (user
// known_hosts first, then pinned), so the server is asked for a key type we can verify instead
// of one we have never seen (which would look like a changed key). Nil when the host is unknown.
func knownHostKeyAlgorithms(p HostKeyPolicy, address string) []string {
	if p.Mode == HostKeysInsecureIgnore {
		return nil
	}
	var files []string
	if p.UserKnownHostsFile != "" {
		files = append(files, p.UserKnownHostsFile)
	}
	if p.StateDir != "" {
		files = append(files, filepath.Join(p.StateDir, PinnedHostsFileName))
	}
	// A key that is on record nowhere makes the callback list every key it has for the host.
	probe, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		cb, err := knownhosts.New(f)
		if err != nil {
			continue
		}
		var keyErr *knownhosts.KeyError
		if !errors.As(cb(address, &net.TCPAddr{IP: net.IPv4zero}, probe), &keyErr) {
			continue
		}
		for _, w := range keyErr.Want {
			for _, a := range algorithmsForKeyType(w.Key.Type()) {
				if !seen[a] {
					seen[a] = true
					algos = append(algos, a)
				}
			}
		}
	}
	return algos
}

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}
