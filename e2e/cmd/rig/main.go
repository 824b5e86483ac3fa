// Command rig drives the e2e rig by hand and from make:
//
//	rig artifacts [component...]   build (or find cached) binaries; print their paths
//	                               (and the provider mirror's, with the vSphere provider)
//	rig up [-machines N]           start machines and a registry with everything
//	                               published; print how to reach them; Ctrl-C tears down
//	rig down -env FILE             stop the `rig up` that wrote FILE (SIGTERM, waits up to 60 s)
//	rig sweep                      remove leftovers of killed runs
//
// Run it as root from the checkout (it finds e2e/tools from the working directory).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/images"
	"github.com/dhctl-dev/dhctl/e2e/rig"
	"github.com/dhctl-dev/dhctl/internal/installerimage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "rig:", err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rig artifacts [component...] | rig image -dhctl BIN -version V -out DIR | rig up [-machines N] [-env FILE] | rig down -env FILE | rig sweep")
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("missing command")
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "artifacts":
		start := time.Now()
		bins, err := artifacts.Build(ctx, artifacts.Options{Logf: logf}, args[1:]...)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(bins))
		for n := range bins {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stdout, "%s\t%s\n", n, bins[n])
		}
		if len(args) == 1 || slices.Contains(args[1:], artifacts.VSphereProvider) {
			mirror, err := artifacts.ProviderMirror(ctx, artifacts.Options{Logf: logf})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "provider-mirror\t%s\n", mirror)
		}
		logf("rig: artifacts ready in %v", time.Since(start).Round(time.Millisecond))
		return nil
	case "image":
		return image(ctx, args[1:], stdout, logf)
	case "sweep":
		return rig.Sweep(ctx, rig.DefaultStateDir)
	case "up":
		return up(ctx, args[1:], stdout, logf)
	case "down":
		return down(ctx, args[1:], logf)
	default:
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// image writes the installer image, from this machine's offline builds, as a bundle.
func image(ctx context.Context, args []string, stdout io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("rig image", flag.ContinueOnError)
	dhctl := fs.String("dhctl", "", "the static linux/amd64 dhctl binary to ship")
	version := fs.String("version", "", "dhctl's version: the image's tag")
	out := fs.String("out", "", "the bundle directory to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dhctl == "" || *version == "" || *out == "" {
		return errors.New("rig image: -dhctl, -version and -out are required")
	}
	start := time.Now()
	in, err := artifacts.InstallerInputs(ctx, artifacts.Options{Logf: logf}, *dhctl, *version)
	if err != nil {
		return err
	}
	m, err := installerimage.WriteBundle(ctx, *out, in)
	if err != nil {
		return err
	}
	for _, a := range m.Archives {
		for _, f := range a.Files {
			fmt.Fprintf(stdout, "%s/%s\t%d bytes\tsha256:%s\n", *out, f.Name, f.Size, f.SHA256)
		}
	}
	fmt.Fprintf(stdout, "image %s (%s) in %v: dhctl mirror push %s <registry>/<path>; skopeo copy oci-archive:%s/platform.tar:%s ...\n",
		m.Items[0].Path, m.Items[0].Digest, time.Since(start).Round(time.Millisecond), *out, *out, m.Items[0].Path)
	return nil
}

func up(ctx context.Context, args []string, stdout io.Writer, logf func(string, ...any)) (err error) {
	fs := flag.NewFlagSet("rig up", flag.ContinueOnError)
	n := fs.Int("machines", 3, "number of machines")
	envFile := fs.String("env", "", "also write the printed variables to this file (0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 0 {
		return fmt.Errorf("-machines=%d: want 0 or more", *n)
	}
	r, err := rig.New(ctx, rig.Options{Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	reg, err := r.StartRegistry(ctx)
	if err != nil {
		return err
	}
	imagesRepo := reg.Host + "/dhctl"
	dst := images.Registry{Transport: reg.Transport(), User: reg.User, Password: reg.Password}
	if _, err := artifacts.Publish(ctx, artifacts.Options{Logf: logf}, dst, imagesRepo, artifacts.Selection{}); err != nil {
		return err
	}
	ms, err := r.StartMachines(ctx, *n)
	if err != nil {
		return err
	}
	pwFile := filepath.Join(r.Dir(), "registry", "password.txt")
	var b strings.Builder
	fmt.Fprintf(&b, "RIG_PID=%d\n", os.Getpid())
	fmt.Fprintf(&b, "RIG_ID=%s\n", r.ID())
	fmt.Fprintf(&b, "RIG_NETNS=%s\n", r.NetNS())
	fmt.Fprintf(&b, "RIG_SSH_KEY=%s\n", r.SSHKeyFile())
	fmt.Fprintf(&b, "RIG_IMAGES_REPO=%s\n", imagesRepo)
	fmt.Fprintf(&b, "RIG_REGISTRY_CA=%s\n", reg.CAFile)
	fmt.Fprintf(&b, "RIG_REGISTRY_USER=%s\n", reg.User)
	fmt.Fprintf(&b, "RIG_REGISTRY_PASSWORD_FILE=%s\n", pwFile)
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.Address.String())
	}
	fmt.Fprintf(&b, "RIG_MACHINES=%q\n", strings.Join(addrs, " "))
	fmt.Fprint(stdout, b.String())
	if *envFile != "" {
		if err := os.WriteFile(*envFile, []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "# SSH to a machine: nsenter --net=%s ssh -i %s -o StrictHostKeyChecking=no root@%s\n", r.NetNS(), r.SSHKeyFile(), addrs0(addrs))
	for _, m := range ms {
		if pid, err := m.Leader(); err == nil {
			fmt.Fprintf(stdout, "# shell without SSH on %s (%s): nsenter --target %d --all /bin/bash\n", m.Name, m.Address, pid)
		}
	}
	fmt.Fprintln(stdout, "# Ctrl-C (or SIGTERM) stops everything")
	<-ctx.Done()
	return nil
}

func addrs0(a []string) string {
	if len(a) == 0 {
		return "<none>"
	}
	return a[0]
}

// down stops the `rig up` process named by RIG_PID in an env file written by
// `rig up -env FILE` and waits until it is gone (its SIGTERM handler tears
// the rig down).
func down(ctx context.Context, args []string, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("rig down", flag.ContinueOnError)
	envFile := fs.String("env", "", "env file written by `rig up -env FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *envFile == "" {
		return errors.New("rig down: -env FILE is required (the file `rig up -env FILE` wrote)")
	}
	data, err := os.ReadFile(*envFile)
	if os.IsNotExist(err) {
		logf("rig: %s does not exist: nothing to stop", *envFile)
		return nil
	}
	if err != nil {
		return err
	}
	pid := 0
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RIG_PID="); ok {
			pid, err = strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: RIG_PID=%q is not a process ID", *envFile, v)
			}
		}
	}
	if pid <= 0 {
		return fmt.Errorf("%s has no RIG_PID line: was it written by `rig up -env`?", *envFile)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			logf("rig: process %d is gone already", pid)
			return os.Remove(*envFile)
		}
		return fmt.Errorf("signalling rig up (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("rig up (pid %d) still runs 60s after SIGTERM", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	logf("rig: stopped rig up (pid %d)", pid)
	return os.Remove(*envFile)
}
