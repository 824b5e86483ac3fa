// Package state is dhctl's local state directory: one sub-directory per cluster under a root
// (--state-dir), holding checkpoints, terraform states, pinned host keys, kubeconfig and logs.
//
// Guarantees, so that kill -9 at any instant leaves a resumable directory:
//   - directories are 0700 and files 0600 (they hold secrets);
//   - every write is atomic: a temp file in the same directory, fsync, rename over the target,
//     fsync of the directory; a reader sees the old content or the new, never a mix;
//   - temp files left by a killed writer are removed by the next Open (which holds the lock);
//   - a lock (flock on <dir>/lock) keeps two dhctl processes off the same cluster; the kernel
//     drops it when its holder dies, so a crash never leaves a stale lock behind.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhctl-dev/dhctl/internal/exitcode"
	"github.com/dhctl-dev/dhctl/internal/logging"
)

const (
	dirMode  = 0o700
	fileMode = 0o600
	// LockFile is the name of the lock file inside a cluster directory; it is not writable
	// through WriteFile.
	LockFile = "lock"
	// tempMarker is part of every temp file name, so Open can recognise leftovers.
	tempMarker = ".tmp-"
)

// clusterName: a single, portable path element that cannot be "." or "..", start with a dot or a
// dash, or contain a separator.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// commandName: what LogFile accepts as a command in a file name.
var commandName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// ValidateClusterName returns a usage error unless name is a safe single path element.
func ValidateClusterName(name string) error {
	if !clusterName.MatchString(name) {
		return exitcode.Usage(fmt.Errorf("cluster name %q: must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit (it names a directory of the state dir)", name))
	}
	return nil
}

// DefaultRoot is the state root used without --state-dir: $XDG_STATE_HOME/dhctl, or
// ~/.local/state/dhctl when XDG_STATE_HOME is unset or not absolute (as the XDG spec says). The
// environment is read through lookupEnv (the command's, so tests run with their own).
func DefaultRoot(lookupEnv func(string) (string, bool)) (string, error) {
	if x, _ := lookupEnv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "dhctl"), nil
	}
	home, _ := lookupEnv("HOME")
	if home == "" || !filepath.IsAbs(home) {
		return "", exitcode.Usage(errors.New("state dir: cannot find the home directory (HOME is not set to an absolute path): set --state-dir or XDG_STATE_HOME"))
	}
	return filepath.Join(home, ".local", "state", "dhctl"), nil
}

// Dir is an open, locked cluster state directory. Its methods are safe for concurrent use.
type Dir struct {
	path string
	mu   sync.Mutex
	lock *os.File // nil once closed
}

// Holder describes the process holding a cluster's lock, as recorded in the lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "another process (its details are not recorded yet)"
	}
	return fmt.Sprintf("pid %d on host %s (%s), running since %s", h.PID, h.Host, h.Command, h.Started.Format(time.RFC3339))
}

// LockedError says that another process holds a cluster's lock.
type LockedError struct {
	Path   string // the lock file
	Holder Holder
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("cluster state %s is locked by %s: another dhctl is working on this cluster; wait for it to finish or stop it, then retry (the lock is released automatically when that process exits)",
		filepath.Dir(e.Path), e.Holder)
}

// Open creates (0700) and locks the state directory of cluster under root. If another process
// holds the lock, it returns a *LockedError naming the holder. Close releases the lock.
func Open(ctx context.Context, root, cluster string) (*Dir, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ValidateClusterName(cluster); err != nil {
		return nil, err
	}
	if root == "" {
		return nil, exitcode.Usage(errors.New("state dir: the root path is empty: set --state-dir"))
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", root, err)
	}
	if err := os.MkdirAll(root, dirMode); err != nil {
		return nil, fmt.Errorf("state dir: creating %s: %w", root, err)
	}
	path := filepath.Join(root, cluster)
	if err := os.Mkdir(path, dirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("state dir: creating %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state dir %s: exists but is not a directory: move it away or choose another --state-dir", path)
	}
	// Our own directory: enforce 0700 even if it was created by hand or under a lax umask.
	if fi.Mode().Perm() != dirMode {
		if err := os.Chmod(path, dirMode); err != nil {
			return nil, fmt.Errorf("state dir %s: setting mode 0700: %w", path, err)
		}
	}
	if err := syncDir(root); err != nil {
		return nil, err
	}

	lock, err := acquireLock(ctx, filepath.Join(path, LockFile))
	if err != nil {
		return nil, err
	}
	d := &Dir{path: path, lock: lock}
	if err := d.removeTempLeftovers(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func acquireLock(ctx context.Context, lockPath string) (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("state dir: opening lock file %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Path: lockPath, Holder: readHolder(ctx, lockPath)}
		}
		return nil, fmt.Errorf("state dir: locking %s: %w", lockPath, err)
	}
	// We hold the lock: record who we are for the next process that finds it held.
	info, _ := json.Marshal(currentHolder())
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(append(info, '\n'), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state dir: recording the lock holder in %s: %w", lockPath, err)
	}
	return f, nil
}

// readHolder reads the holder recorded in the lock file. The holder writes it right after taking
// the lock, so a racing reader may find it empty: retry briefly (bounded, 1s).
func readHolder(ctx context.Context, lockPath string) Holder {
	deadline := time.Now().Add(time.Second)
	for {
		var h Holder
		data, err := os.ReadFile(lockPath)
		if err == nil && json.Unmarshal(data, &h) == nil && h.PID != 0 {
			return h
		}
		if time.Now().After(deadline) {
			return Holder{}
		}
		select {
		case <-ctx.Done():
			return Holder{}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func currentHolder() Holder {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return Holder{PID: os.Getpid(), Host: host, Command: redactedCommandLine(os.Args), Started: time.Now().UTC().Truncate(time.Second)}
}

// redactedCommandLine joins args with secret flag values masked, both "--password=x" and
// "--password x" forms, since the lock file is shown to other users of the machine.
func redactedCommandLine(args []string) string {
	red := logging.NewRedactor()
	out := make([]string, len(args))
	maskNext := false
	for i, a := range args {
		switch {
		case maskNext:
			out[i] = logging.Masked
			maskNext = false
		case strings.HasPrefix(a, "-") && !strings.Contains(a, "=") && logging.IsSecretKey(a):
			out[i] = a
			maskNext = true
		default:
			out[i] = red.String(a)
		}
	}
	return strings.Join(out, " ")
}

// removeTempLeftovers deletes temp files of writers killed before their rename.
func (d *Dir) removeTempLeftovers() error {
	return filepath.WalkDir(d.path, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("state dir: scanning %s: %w", p, err)
		}
		if !e.IsDir() && strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tempMarker) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("state dir: removing leftover temp file %s: %w", p, err)
			}
		}
		return nil
	})
}

// Path is the absolute path of the cluster directory.
func (d *Dir) Path() string { return d.path }

// resolve checks that name is a clean relative path inside the directory and returns its path.
func (d *Dir) resolve(name string) (string, error) {
	d.mu.Lock()
	closed := d.lock == nil
	d.mu.Unlock()
	if closed {
		return "", fmt.Errorf("state dir %s: used after Close", d.path)
	}
	if name == "" || filepath.IsAbs(name) || filepath.Clean(name) != name || name == "." ||
		name == ".." || strings.HasPrefix(name, "../") || name == LockFile {
		return "", fmt.Errorf("state dir %s: invalid file name %q: want a clean relative path inside the directory, not %q", d.path, name, LockFile)
	}
	for _, part := range strings.Split(name, "/") {
		if strings.Contains(part, tempMarker) && strings.HasPrefix(part, ".") {
			return "", fmt.Errorf("state dir %s: invalid file name %q: names like .*%s* are reserved for temp files", d.path, name, tempMarker)
		}
	}
	return filepath.Join(d.path, name), nil
}

// WriteFile replaces name (a relative path; missing sub-directories are created 0700) with data,
// atomically and durably, mode 0600.
func (d *Dir) WriteFile(name string, data []byte) error {
	target, err := d.resolve(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(target)
	if err := d.mkdirs(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("state dir: writing %s: %w", target, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes 0600 files already; be explicit, the mode is a guarantee of this package.
	if err := tmp.Chmod(fileMode); err != nil {
		return fmt.Errorf("state dir: writing %s: %w", target, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("state dir: writing %s: %w", target, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("state dir: writing %s: fsync: %w", target, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state dir: writing %s: %w", target, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("state dir: writing %s: %w", target, err)
	}
	committed = true
	return syncDir(dir)
}

// mkdirs creates dir and its missing parents below d.path with mode 0700, fsyncing each parent
// so that the new entries survive a crash.
func (d *Dir) mkdirs(dir string) error {
	if dir == d.path {
		return nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("state dir: %s exists but is not a directory", dir)
		}
		return nil
	}
	if err := d.mkdirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("state dir: creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, dirMode); err != nil { // umask may have narrowed nothing, but be sure
		return fmt.Errorf("state dir: creating %s: %w", dir, err)
	}
	return syncDir(filepath.Dir(dir))
}

// LogFile returns the path of a new debug log for a command run at now: logs/<UTC time>-<command>.log
// (logs/ is created 0700). The logger creates the file itself (appending, 0600).
func (d *Dir) LogFile(command string, now time.Time) (string, error) {
	if !commandName.MatchString(command) {
		command = "dhctl"
	}
	name := filepath.Join("logs", now.UTC().Format("20060102T150405Z")+"-"+command+".log")
	p, err := d.resolve(name)
	if err != nil {
		return "", err
	}
	if err := d.mkdirs(filepath.Dir(p)); err != nil {
		return "", err
	}
	return p, nil
}

// ReadFile returns the content of name. A missing file gives an error matching os.ErrNotExist.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	p, err := d.resolve(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// ReadDir lists the entries of the sub-directory name, without temp files of writers. A missing
// directory gives an error matching os.ErrNotExist.
func (d *Dir) ReadDir(name string) ([]os.DirEntry, error) {
	p, err := d.resolve(name)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := entries[:0]
	for _, e := range entries {
		if !(strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tempMarker)) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Remove deletes name durably. Removing a missing file is not an error (callers reset state
// without first checking it exists).
func (d *Dir) Remove(name string) error {
	p, err := d.resolve(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("state dir: removing %s: %w", p, err)
	}
	return syncDir(filepath.Dir(p))
}

// RemoveAll deletes name and everything under it durably (e.g. "checkpoints" to forget every
// phase). A missing name is not an error.
func (d *Dir) RemoveAll(name string) error {
	p, err := d.resolve(name)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("state dir: removing %s: %w", p, err)
	}
	return syncDir(filepath.Dir(p))
}

// Close releases the lock. It is idempotent; the Dir cannot be used afterwards.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lock == nil {
		return nil
	}
	// Closing the descriptor releases the flock; unlock explicitly first to be clear about it.
	err := errors.Join(unix.Flock(int(d.lock.Fd()), unix.LOCK_UN), d.lock.Close())
	d.lock = nil
	if err != nil {
		return fmt.Errorf("state dir %s: releasing the lock: %w", d.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state dir: fsync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state dir: fsync %s: %w", dir, err)
	}
	return nil
}
