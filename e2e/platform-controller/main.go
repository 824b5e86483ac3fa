// Command platform-controller is the stand-in platform controller that the e2e tests install
// into a cluster in place of Deckhouse. It honours the contract a real Deckhouse controller
// relies on, so the tests exercise exactly what dhctl must set up for one:
//
//   - it is started as `/usr/bin/deckhouse-controller start` (its path in the image) and refuses
//     to become Ready without the environment Deckhouse's Deployment gives (the ADDON_OPERATOR_*
//     ports and namespace, DECKHOUSE_POD/NODE_NAME/BUNDLE, LOG_TYPE=json, the module
//     directories, the API server on its own node) and without the downloaded-modules directory
//     its init container makes;
//   - it answers /readyz and /healthz on ADDON_OPERATOR_LISTEN_PORT;
//   - it waits while the ConfigMap d8-system/deckhouse-bootstrap-lock exists, then takes the
//     Lease d8-system/deckhouse-leader-election (holder "<pod>.<suffix>");
//   - as leader it "converges" every enabled ModuleConfig, logging Deckhouse's JSON lines
//     ("ModuleRun success, module is ready" per module, then "ConvergeModules task done"), and
//     only then turns Ready;
//   - it logs the deckhouse ModuleConfig's releaseChannel as it finds it at the first converge
//     and whenever it changes later, so a test can tell when the installer set it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
)

// Version is reported on /version and baked into the image tag.
const Version = "v0.2.1"

// Names the real controller uses.
const (
	namespace    = "d8-system"
	lockName     = "deckhouse-bootstrap-lock"
	leaseName    = "deckhouse-leader-election"
	deckhouseMC  = "deckhouse"
	msgModuleOK  = "ModuleRun success, module is ready"
	msgConverged = "ConvergeModules task done"
)

// requiredEnv is what Deckhouse's Deployment sets and the controller reads.
var requiredEnv = []string{
	"DECKHOUSE_POD", "DECKHOUSE_NODE_NAME", "DECKHOUSE_BUNDLE",
	"ADDON_OPERATOR_LISTEN_PORT", "ADDON_OPERATOR_ADMISSION_SERVER_LISTEN_PORT",
	"ADDON_OPERATOR_NAMESPACE", "ADDON_OPERATOR_LISTEN_ADDRESS", "ADDON_OPERATOR_CONFIG_MAP",
	"HELM_HOST", "LOG_LEVEL", "LOG_TYPE", "MODULES_DIR", "DOWNLOADED_MODULES_DIR",
	"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
}

var moduleConfigs = schema.GroupVersionResource{Group: "deckhouse.io", Version: "v1alpha1", Resource: "moduleconfigs"}

func main() {
	if len(os.Args) != 2 || os.Args[1] != "start" {
		fmt.Fprintln(os.Stderr, "usage: deckhouse-controller start")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Getenv, os.Stdout, func() (*rest.Config, error) { return rest.InClusterConfig() }, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "deckhouse-controller:", err)
		os.Exit(1)
	}
}

// controller is one replica's state, shared by the HTTP handlers and the work loop.
type controller struct {
	log    *slog.Logger
	getenv func(string) string

	mu       sync.Mutex
	notReady string // why /readyz fails; "" = ready
}

func (c *controller) setNotReady(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notReady = why
}

func (c *controller) readiness() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notReady
}

// newLogger writes Deckhouse's JSON lines: lower-case "level", "msg", "time".
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.LevelKey {
			return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
		}
		return a
	}}))
}

// run is the controller: ln, when given, replaces listening on ADDON_OPERATOR_LISTEN_PORT (tests).
func run(ctx context.Context, getenv func(string) string, logOut io.Writer, restConfig func() (*rest.Config, error), ln net.Listener) error {
	c := &controller{log: newLogger(logOut), getenv: getenv, notReady: "starting"}
	missing := missingEnv(getenv)
	if ln == nil {
		port, err := strconv.Atoi(getenv("ADDON_OPERATOR_LISTEN_PORT"))
		if err != nil || port < 1 || port > 65535 {
			port = 4222 // still answer the probe, with the reason it fails
		}
		l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
		if err != nil {
			return err
		}
		ln = l
	}
	srv := &http.Server{Handler: c.handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	c.log.Info("deckhouse-controller stand-in starting", "version", Version, "listen", ln.Addr().String())

	if len(missing) > 0 {
		why := "missing environment: " + strings.Join(missing, ", ")
		c.log.Error(why)
		c.setNotReady(why)
		return waitEnd(ctx, served)
	}
	if getenv("LOG_TYPE") != "json" {
		why := fmt.Sprintf("LOG_TYPE=%q: the installer reads JSON lines; want json", getenv("LOG_TYPE"))
		c.log.Error(why)
		c.setNotReady(why)
		return waitEnd(ctx, served)
	}
	modulesDir := filepath.Join(getenv("DOWNLOADED_MODULES_DIR"), "modules")
	if fi, err := os.Stat(modulesDir); err != nil || !fi.IsDir() {
		why := fmt.Sprintf("%s is missing (the init container makes it): %v", modulesDir, err)
		c.log.Error(why)
		c.setNotReady(why)
		return waitEnd(ctx, served)
	}
	cfg, err := restConfig()
	if err != nil {
		return fmt.Errorf("API server config: %w", err)
	}
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.setNotReady("waiting for the bootstrap lock to go")
	if err := c.waitBootstrapLock(ctx, typed); err != nil {
		return err
	}
	c.setNotReady("not the leader yet")
	errc := make(chan error, 1)
	go func() { errc <- c.lead(ctx, typed, dyn) }()
	select {
	case err := <-errc:
		return err
	case err := <-served:
		return err
	}
}

func waitEnd(ctx context.Context, served <-chan error) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-served:
		return err
	}
}

func missingEnv(getenv func(string) string) []string {
	var out []string
	for _, k := range requiredEnv {
		if getenv(k) == "" {
			out = append(out, k)
		}
	}
	return out
}

func (c *controller) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := c.readiness(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, Version) })
	return mux
}

// waitBootstrapLock waits while the installer holds the queue (as the real controller does).
func (c *controller) waitBootstrapLock(ctx context.Context, k kubernetes.Interface) error {
	told := false
	for {
		_, err := k.CoreV1().ConfigMaps(namespace).Get(ctx, lockName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if told {
				c.log.Info("bootstrap lock has been released")
			}
			return nil
		case err == nil && !told:
			c.log.Info("bootstrap lock config map exists, wait for bootstrap")
			told = true
		case err != nil:
			c.log.Warn("reading the bootstrap lock", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// lead takes the leader Lease and converges while it holds it; losing it ends the process (the
// real controller restarts too).
func (c *controller) lead(ctx context.Context, k kubernetes.Interface, dyn dynamic.Interface) error {
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	identity := c.getenv("DECKHOUSE_POD") + "." + hex.EncodeToString(suffix)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
		Client:     k.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	lost := make(chan error, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				c.log.Info("leader election won", "identity", identity)
				if err := c.converge(ctx, dyn); err != nil && ctx.Err() == nil {
					lost <- err
				}
			},
			OnStoppedLeading: func() {
				select {
				case lost <- errors.New("leader election lost"):
				default:
				}
			},
		},
	})
	if err != nil {
		return err
	}
	ran := make(chan struct{})
	go func() { defer close(ran); le.Run(ctx) }()
	select {
	case <-ctx.Done():
		// Run releases the Lease on its way out (ReleaseOnCancel): let it, within a bound. Its
		// release updates the record it last saw, so it fails when a renewal cut short by the
		// cancel reached the API server anyway (a conflict): then release it here, from the
		// current record.
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
		}
		if err := releaseLease(k, identity); err != nil {
			c.log.Warn("releasing the leader Lease", "error", err.Error())
		}
		return ctx.Err()
	case err := <-lost:
		return err
	}
}

// releaseLease empties the leader Lease's holder if it is still identity, within a bound.
func releaseLease(k kubernetes.Interface, identity string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leases := k.CoordinationV1().Leases(namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != identity {
			return nil
		}
		l.Spec.HolderIdentity = nil
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}

// converge "runs" every enabled module once, reports it the way the real controller does, turns
// Ready, and then follows the deckhouse ModuleConfig's releaseChannel.
func (c *controller) converge(ctx context.Context, dyn dynamic.Interface) error {
	var list *unstructured.UnstructuredList
	for {
		var err error
		list, err = dyn.Resource(moduleConfigs).List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		c.log.Warn("listing ModuleConfigs", "error", err.Error())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	var modules []string
	channel := ""
	for _, mc := range list.Items {
		enabled, found, _ := unstructured.NestedBool(mc.Object, "spec", "enabled")
		if mc.GetName() == deckhouseMC {
			channel, _, _ = unstructured.NestedString(mc.Object, "spec", "settings", "releaseChannel")
			enabled, found = true, true
		}
		if found && enabled {
			modules = append(modules, mc.GetName())
		}
	}
	sort.Strings(modules)
	for _, m := range modules {
		c.log.Info(msgModuleOK, "module", m, "operator.component", "taskRunner")
	}
	c.log.Info(msgConverged, "modules", len(modules), "releaseChannel", channel, "bundle", c.getenv("DECKHOUSE_BUNDLE"))
	c.setNotReady("")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
		mc, err := dyn.Resource(moduleConfigs).Get(ctx, deckhouseMC, metav1.GetOptions{})
		if err != nil {
			continue
		}
		if now, _, _ := unstructured.NestedString(mc.Object, "spec", "settings", "releaseChannel"); now != channel {
			c.log.Info("release channel changed", "from", channel, "releaseChannel", now)
			channel = now
		}
	}
}
