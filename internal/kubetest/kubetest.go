// Package kubetest starts a real etcd and kube-apiserver (optionally kube-controller-manager and
// kube-scheduler) on 127.0.0.1 for integration tests. The binaries are the ones e2e/artifacts
// builds and caches (Kubernetes v1.33.13, etcd v3.5.24), so a cold machine builds them once and
// every later run starts a cluster in a few seconds. Certificates are generated per cluster;
// everything (processes, files) is removed in t.Cleanup, the API server stopped before etcd.
package kubetest

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/dhctl-dev/dhctl/e2e/artifacts"
)

// Options select the optional components.
type Options struct {
	// Controllers starts kube-controller-manager and kube-scheduler too, so Deployments get
	// ReplicaSets and Pods (which stay Pending: there is no kubelet and no Node).
	Controllers bool
	// NetNS, if set, runs every component inside that network namespace (/run/netns/<NetNS>),
	// the API server listening on all its addresses: a test can then reach it only the way a
	// user does, e.g. through SSH to a host in that namespace.
	NetNS string
	// Address is the API server's advertised address, put in its certificate and in Config;
	// "" means 127.0.0.1. With NetNS, give the namespace's address reachable by DialContext.
	Address string
	// DialContext, if set, is how Config reaches Address (e.g. sshtest.Lab.DialContext).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ServiceCIDR is the API server's service-cluster-ip-range: a test that creates Services
	// with fixed cluster IPs gives its configuration's serviceSubnetCIDR. "" means 10.96.0.0/16.
	ServiceCIDR string
}

// Cluster is a running control plane without nodes.
type Cluster struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file holding the same credentials (mode 0600).
	Kubeconfig string
	// Dir holds certificates, data and the components' logs.
	Dir string

	netns string
	procs []*proc // in start order; stopped in reverse
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startTimeout bounds how long the control plane may take to answer /readyz.
const startTimeout = 90 * time.Second

// Start builds (or finds in the cache) the binaries and starts the control plane. It fails the
// test with the components' last log lines when they do not come up.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bins, err := artifacts.Build(ctx, artifacts.Options{Logf: t.Logf}, artifacts.Kubernetes, artifacts.Etcd)
	if err != nil {
		t.Fatalf("kubetest: building kube-apiserver and etcd: %v", err)
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir}
	t.Cleanup(c.stop)
	if err := c.start(ctx, bins, opts); err != nil {
		t.Fatalf("kubetest: %v%s", err, c.logTails())
	}
	return c
}

func (c *Cluster) start(ctx context.Context, bins artifacts.Binaries, opts Options) error {
	addr := opts.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	bind := "127.0.0.1"
	if opts.NetNS != "" {
		bind = "0.0.0.0"
		c.netns = opts.NetNS
		// etcd listens on the namespace's loopback.
		if out, err := exec.Command("ip", "-n", opts.NetNS, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("ip -n %s link set lo up: %v: %s", opts.NetNS, err, out)
		}
	}
	pki, err := writePKI(c.Dir, net.ParseIP(addr))
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, err := freePorts3()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.run("etcd", bins["etcd"],
		"--name=kubetest",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync", // throwaway data: no need to wait for the disk
		"--log-level=warn",
	); err != nil {
		return err
	}
	if err := c.run("kube-apiserver", bins["kube-apiserver"],
		"--etcd-servers="+etcdURL,
		"--bind-address="+bind, "--advertise-address="+addr, "--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+pki.serverCert, "--tls-private-key-file="+pki.serverKey,
		"--client-ca-file="+pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub, "--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range="+cmp.Or(opts.ServiceCIDR, "10.96.0.0/16"),
		"--endpoint-reconciler-type=none", // the only address is loopback
		"--authorization-mode=RBAC",
		"--allow-privileged=true", // as kubeadm sets it: CNI and kube-proxy pods are privileged
		"--profiling=false",
	); err != nil {
		return err
	}
	c.Config = &rest.Config{
		Host: "https://" + net.JoinHostPort(addr, strconv.Itoa(apiPort)),
		Dial: opts.DialContext,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: pki.caCert, CertFile: pki.adminCert, KeyFile: pki.adminKey,
		},
		QPS: 200, Burst: 400,
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Config); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	if !opts.Controllers {
		return nil
	}
	if err := c.run("kube-controller-manager", bins["kube-controller-manager"],
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--service-account-private-key-file="+pki.saKey, "--root-ca-file="+pki.caCert,
		"--use-service-account-credentials=false",
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route",
		"--profiling=false",
	); err != nil {
		return err
	}
	return c.run("kube-scheduler", bins["kube-scheduler"],
		"--kubeconfig="+c.Kubeconfig,
		"--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
		"--profiling=false",
	)
}

// run starts one component in its own process group, logging to a file in Dir.
func (c *Cluster) run(name, bin string, args ...string) error {
	if bin == "" {
		return fmt.Errorf("no %s binary in the artifacts build", name)
	}
	logPath := filepath.Join(c.Dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	if c.netns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + c.netns, "--", bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, and killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// waitReady polls /readyz until it answers ok, a component exits, or startTimeout passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var last error
	for {
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited during start-up (%v)", p.name, p.cmd.ProcessState)
			default:
			}
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver at %s not ready after %s: %v", c.Config.Host, startTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop ends the components in reverse order (the API server before etcd: the other way round it
// hangs in shutdown for 40 s), SIGTERM first, SIGKILL after a bound.
func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	c.procs = nil
}

// Stop stops the cluster now (it is also stopped by t.Cleanup).
func (c *Cluster) Stop() { c.stop() }

// logTails is the end of every component's log, for failure messages.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", p.name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// freePorts3 picks three free TCP ports on 127.0.0.1 (holding all three listeners at once so they
// differ).
func freePorts3() (a, b, c int, err error) {
	var ports [3]int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, 0, err
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], ports[2], nil
}

// writeKubeconfig writes a self-contained kubeconfig (certificates embedded), like kubeadm's
// admin.conf.
func writeKubeconfig(path string, cfg *rest.Config) error {
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: ca}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	kc.CurrentContext = "kubetest"
	return clientcmd.WriteToFile(*kc, path)
}
