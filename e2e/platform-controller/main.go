// Command platform-controller is the stand-in platform controller that the
// e2e tests install into a cluster: it answers /healthz and /readyz so that
// dhctl's install step has a real Deployment to wait for.
//
// The port comes from --port, else $PLATFORM_CONTROLLER_PORT, else 8080.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Version is reported on /version and baked into the image tag.
const Version = "v0.1.0"

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "platform-controller:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	port, err := portFrom(args, getenv)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serve(ctx, ln)
}

// portFrom reads the port from flags or the environment.
func portFrom(args []string, getenv func(string) string) (int, error) {
	fs := flag.NewFlagSet("platform-controller", flag.ContinueOnError)
	def := 8080
	if v := getenv("PLATFORM_CONTROLLER_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return 0, fmt.Errorf("PLATFORM_CONTROLLER_PORT=%q: want a port number 1-65535", v)
		}
		def = p
	}
	port := fs.Int("port", def, "TCP port for /healthz, /readyz and /version (env PLATFORM_CONTROLLER_PORT)")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	if *port < 1 || *port > 65535 {
		return 0, fmt.Errorf("--port=%d: want a port number 1-65535", *port)
	}
	return *port, nil
}

// handler serves the probes.
func handler() http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, Version)
	})
	return mux
}

// serve answers on ln until ctx ends, then shuts down within 5 s.
func serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("platform-controller %s listening on %s", Version, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
