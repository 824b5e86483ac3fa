package rig

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cgroupRoot is where the host mounts its cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// makeCgroups creates <own cgroup>/<sub> in every hierarchy the current
// process belongs to and returns the created directories.
//
// PID 1 of this host is not systemd, so systemd-nspawn --keep-unit uses the
// cgroup it is started in as the machine's cgroup root. Without a subtree per
// machine, the kubelets of all machines would share one kubepods.slice.
func makeCgroups(sub string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("rig: reading own cgroups: %w", err)
	}
	var dirs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := hierarchyMount(parts[1])
		if mount == "" {
			continue
		}
		base := filepath.Join(mount, parts[2])
		if _, err := os.Stat(base); err != nil {
			continue // hierarchy not mounted here
		}
		dir := filepath.Join(base, sub)
		if err := mkdirCgroup(base, dir); err != nil {
			removeCgroups(dirs)
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// hierarchyMount maps a controller list from /proc/self/cgroup to its mount.
func hierarchyMount(controllers string) string {
	switch {
	case controllers == "":
		return filepath.Join(cgroupRoot, "unified")
	case strings.HasPrefix(controllers, "name="):
		return filepath.Join(cgroupRoot, strings.TrimPrefix(controllers, "name="))
	default:
		// Co-mounted controllers (cpu,cpuacct) share one directory.
		return filepath.Join(cgroupRoot, controllers)
	}
}

// mkdirCgroup creates every directory from base down to dir. cpuset cgroups
// start with no CPUs or memory nodes, so copy them from the parent.
func mkdirCgroup(base, dir string) error {
	rel, err := filepath.Rel(base, dir)
	if err != nil {
		return err
	}
	parent := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur := filepath.Join(parent, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("rig: creating cgroup %s: %w", cur, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(cur, f), v, 0o644); err != nil {
				return fmt.Errorf("rig: setting %s of cgroup %s: %w", f, cur, err)
			}
		}
		parent = cur
	}
	return nil
}

// cgroupPIDs lists every process in dir and its descendants.
func cgroupPIDs(dir string) []int {
	var pids []int
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroups removes the given cgroup directories and everything below
// them (children first: rmdir is the only way to remove a cgroup).
func removeCgroups(dirs []string) error {
	var firstErr error
	for _, dir := range dirs {
		var all []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			if err := os.Remove(all[i]); err != nil && !os.IsNotExist(err) && firstErr == nil {
				firstErr = fmt.Errorf("rig: removing cgroup %s: %w", all[i], err)
			}
		}
	}
	return firstErr
}
