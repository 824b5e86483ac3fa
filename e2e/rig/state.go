package rig

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultStateDir holds one directory per running rig (overlay roots, machine
// logs, registry data, keys). It is on disk, not tmpfs, because machines may
// pull images into it.
const DefaultStateDir = "/var/tmp/dhctl-rig"

// netnsPrefix starts the name of every namespace a rig creates, so a sweep can
// tell them from others.
const netnsPrefix = "dhctl-rig-"

// Files in a rig's state directory that a later sweep reads.
const (
	ownerFile   = "owner"   // "<pid> <start time>" of the process that made the rig
	cgroupsFile = "cgroups" // cgroup directories made for machines, one a line
)

// processStart returns the start time of pid in clock ticks since boot (field
// 22 of /proc/PID/stat), which together with the PID names a process uniquely.
func processStart(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may contain spaces; fields after it do not.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return fields[19], nil
}

func writeOwner(dir string) error {
	start, err := processStart(os.Getpid())
	if err != nil {
		return fmt.Errorf("rig: reading own start time: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), start)), 0o644)
}

// ownerAlive tells whether the process that made the rig in dir still runs.
func ownerAlive(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		// Being created right now, or broken. Give a fresh directory the
		// benefit of the doubt.
		if st, err := os.Stat(dir); err == nil && time.Since(st.ModTime()) < time.Minute {
			return true
		}
		return false
	}
	var pid int
	var start string
	if _, err := fmt.Sscan(string(data), &pid, &start); err != nil {
		return false
	}
	now, err := processStart(pid)
	return err == nil && now == start
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// killCgroups SIGKILLs every process in the given cgroups until none is left
// or the timeout passes.
func killCgroups(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		for _, d := range dirs {
			pids = append(pids, cgroupPIDs(d)...)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rig: processes %v still alive %v after SIGKILL", pids, timeout)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmountUnder unmounts every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	prefix := filepath.Clean(dir)
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMount(f[4])
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var firstErr error
	for _, p := range points {
		if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			// Busy: detach it so the directory can go; the kernel frees it
			// when the last user leaves.
			if err2 := unix.Unmount(p, unix.MNT_DETACH); err2 != nil && firstErr == nil {
				firstErr = fmt.Errorf("rig: unmounting %s: %w", p, err)
			}
		}
	}
	return firstErr
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// teardownDir removes everything a rig recorded in its state directory:
// processes in its cgroups, mounts, its network namespace, the cgroups and the
// directory itself.
func teardownDir(ctx context.Context, dir string) error {
	id := filepath.Base(dir)
	var errs []error
	cgroups := readLines(filepath.Join(dir, cgroupsFile))
	if err := killCgroups(cgroups, 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	// Processes that are in the namespace but not in a machine cgroup (the
	// registry, or a machine's launcher not yet moved).
	if out, err := output(ctx, nil, "ip", "netns", "pids", netnsPrefix+id); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetns(ctx, netnsPrefix+id); err != nil {
		errs = append(errs, err)
	}
	// Machine cgroups sit in one directory per rig in each hierarchy.
	for _, c := range cgroups {
		if parent := filepath.Dir(c); filepath.Base(parent) == netnsPrefix+id {
			cgroups = append(cgroups, parent)
		}
	}
	if err := removeCgroupsRetry(cgroups, 5*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("rig: removing %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// removeCgroupsRetry retries because a cgroup stays busy for a moment after
// its last process died.
func removeCgroupsRetry(dirs []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := removeCgroups(dirs)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sweep removes what rigs of earlier, killed runs left behind under stateDir
// (processes, mounts, network namespaces, cgroups, files). Rigs whose owning
// process still runs are left alone, so parallel test processes are safe.
func Sweep(ctx context.Context, stateDir string) error {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("rig: sweep: %w", err)
	}
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(stateDir, e.Name())
		if !e.IsDir() || ownerAlive(dir) {
			continue
		}
		if err := teardownDir(ctx, dir); err != nil {
			errs = append(errs, fmt.Errorf("rig: sweeping leftovers of run %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}
