// Command demo is `make demo`: rig machines (1 master + 1 worker by default) and a local registry
// with the offline artifacts, then `dhctl bootstrap` against them exactly as a user runs it, then
// `kubectl get nodes -o wide` with dhctl's kubeconfig. It keeps the machines up until SIGTERM or
// SIGINT (`make demo-down`), then removes everything.
//
//	demo -dir DIR [-masters N] [-workers N]
//
// It prints "DEMO READY" (or "DEMO FAILED: ...") once the bootstrap ended; the Makefile waits for
// that line. Run it as root from the checkout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Printf("DEMO FAILED: %v\n", err)
		os.Exit(1)
	}
}

func run() (err error) {
	dir := flag.String("dir", "", "working directory: configuration, dhctl's state dir, demo.pid")
	masters := flag.Int("masters", 1, "masters")
	workers := flag.Int("workers", 1, "workers")
	flag.Parse()
	if *dir == "" || *masters < 1 || *workers < 0 {
		return errors.New("usage: demo -dir DIR [-masters N>=1] [-workers N>=0]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	checkout, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	pidFile := filepath.Join(*dir, "demo.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pidFile)
	// A fresh state dir: the demo is a new cluster every time.
	if err := os.RemoveAll(filepath.Join(*dir, "state")); err != nil {
		return err
	}
	logf := func(f string, a ...any) { fmt.Printf("# "+f+"\n", a...) }
	start := time.Now()
	l, err := lab.Start(ctx, lab.Options{Masters: *masters, Workers: *workers, Dir: *dir, Checkout: checkout, Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("# removing the machines, the registry and the network namespace")
		err = errors.Join(err, l.Close())
	}()
	fmt.Printf("# %d machines and the registry ready in %v\n", *masters+*workers, time.Since(start).Round(time.Second))
	args := l.BootstrapArgs()
	fmt.Printf("$ nsenter --net=%s %s %s\n", l.Rig.NetNS(), l.Bin, strings.Join(args, " "))
	cmd := l.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		fmt.Printf("DEMO FAILED: dhctl bootstrap: %v (the machines stay up for a look; `make demo-down` removes them)\n", err)
	} else {
		bins, err := artifacts.Build(ctx, artifacts.Options{}, artifacts.Kubernetes)
		if err != nil {
			return err
		}
		out, err := l.Kubectl(ctx, "get", "nodes", "-o", "wide")
		fmt.Printf("\n$ kubectl --kubeconfig %s get nodes -o wide\n%s\n", l.Kubeconfig(), out)
		if err != nil {
			fmt.Printf("DEMO FAILED: %v\n", err)
		} else {
			fmt.Printf("kubeconfig: %s\nthe API server is inside the rig's network namespace; reach it with\n  nsenter --net=%s %s --kubeconfig %s get pods -A\n",
				l.Kubeconfig(), l.Rig.NetNS(), bins["kubectl"], l.Kubeconfig())
			fmt.Println("DEMO READY (make demo-down removes everything)")
		}
	}
	<-ctx.Done()
	return nil
}
