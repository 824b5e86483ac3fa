// Package vspheretest starts govmomi's vCenter simulator in the test process, on loopback (or
// inside a network namespace the test made), with what a vSphere cluster's configuration names:
// the region tag on the datacenter, zone tags on a cluster and a standalone host, and templates a
// real vCenter would accept. The layout's tests, the provider's tests and the end-to-end
// bootstrap share it.
package vspheretest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	// Besides SOAP the vSphere provider logs in to the REST API (/rest/com/vmware/cis/session,
	// tagging) and opens a storage policy client (/pbm): these simulators register those
	// endpoints (Service.RegisterEndpoints).
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// The simulator's inventory (simulator.VPX) and the tags Start adds to it.
const (
	Datacenter = "DC0"
	Cluster    = "DC0_C0" // carries the zone tag "DC0_C0"
	Host       = "DC0_H0" // a standalone host carrying the zone tag "zone-b"
	ZoneB      = "zone-b"
	Template   = "DC0_H0_VM0"
	Template2  = "DC0_H0_VM1"
	Datastore  = "LocalDS_0"
	Network    = "VM Network"
	RegionTag  = "region-1"
	RegionCat  = "k8s-region"
	ZoneCat    = "k8s-zone"
	Username   = "user"
	Password   = "pass" // any is accepted
)

// Env is a running simulator.
type Env struct {
	Host   string // host:port, for provider.server
	Client *govmomi.Client
	Finder *find.Finder // bound to Datacenter
}

// Options say where the simulator listens. The zero value is loopback, any free port.
type Options struct {
	// Listen is the host:port to listen on ("" = 127.0.0.1:0). Any address but loopback needs
	// Within: the simulator never listens on the network of the host itself.
	Listen string
	// Within runs fn where the listener is to be made: e.g. on an OS thread switched into a test's
	// network namespace, where the program under test runs (nil = here).
	Within func(fn func() error) error
	// DialContext is how the test's own client reaches Listen (nil = the default dialer).
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// Delays hold SOAP methods back before they run ("CloneVM_Task": 10 * time.Second), as a
	// real vCenter takes minutes to clone: what a run killed meanwhile leaves can be tested.
	// The set-up StartWith does itself is held back as well.
	Delays map[string]time.Duration
}

// Start runs the simulator on loopback until the test ends.
func Start(t testing.TB, ctx context.Context) *Env {
	t.Helper()
	return StartWith(t, ctx, Options{})
}

// StartWith runs the simulator where o says until the test ends.
func StartWith(t testing.TB, ctx context.Context, o Options) *Env {
	t.Helper()
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if o.Within == nil {
		if err := checkLoopback(listen); err != nil {
			t.Fatal(err)
		}
	}
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(model.Remove)
	// The simulator's hosts answer QueryConfigOption with hardware version vmx-13 (its VMs'),
	// but without the number that goes with it (HardwareOptions.HwVersion 0): the provider then
	// sees a VM newer than its host and "upgrades" it to vmx-13 in every update of a VM, which the
	// simulator refuses (AlreadyUpgradedFault). A real ESXi gives both; so do these.
	for _, ref := range model.Map().AllReference("EnvironmentBrowser") {
		if b, ok := ref.(*simulator.EnvironmentBrowser); ok {
			b.QueryConfigOptionResponse.Returnval = &types.VirtualMachineConfigOption{
				Version:         esx.HardwareVersion,
				DefaultDevice:   esx.VirtualDevice,
				HardwareOptions: types.VirtualHardwareOption{HwVersion: hwVersion(esx.HardwareVersion)},
			}
		}
	}
	// Set before the server starts: the simulator reads them unlocked.
	if len(o.Delays) > 0 {
		model.DelayConfig.MethodDelay = map[string]int{}
		for m, d := range o.Delays {
			model.DelayConfig.MethodDelay[m] = int(d.Milliseconds())
		}
	}
	// HTTPS as a vCenter; the vapi endpoints (REST sessions, tagging) on.
	model.Service.Listen = &url.URL{Host: listen}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	var server *simulator.Server
	newServer := func() (err error) {
		// NewServer panics when it cannot listen.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("vspheretest: starting the simulator on %s: %v", listen, r)
			}
		}()
		server = model.Service.NewServer()
		return nil
	}
	var err error
	if o.Within != nil {
		err = o.Within(newServer)
	} else {
		err = newServer()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)

	client, err := newClient(ctx, server.URL, o.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Logout(context.WithoutCancel(ctx)) })
	finder := find.NewFinder(client.Client, true)
	dc, err := finder.Datacenter(ctx, Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	env := &Env{Host: server.URL.Host, Client: client, Finder: finder}

	// The simulator's VMs have their CD-ROM on the SCSI controller at the root disk's unit,
	// which vSphere would refuse and which makes the provider's import find two devices at
	// SCSI 0:0: the templates' go to the IDE controller, as in a real template.
	for _, name := range []string{Template, Template2} {
		moveCdromToIDE(t, ctx, finder, name)
	}

	rc := rest.NewClient(client.Client)
	if err := rc.Login(ctx, simulator.DefaultLogin); err != nil {
		t.Fatal(err)
	}
	tm := tags.NewManager(rc)
	cluster, err := finder.ClusterComputeResource(ctx, Cluster)
	if err != nil {
		t.Fatal(err)
	}
	host, err := finder.ComputeResource(ctx, Host)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		category, tag string
		types         []string
		obj           mo.Reference
	}{
		{RegionCat, RegionTag, []string{"Datacenter"}, dc},
		{ZoneCat, Cluster, []string{"ClusterComputeResource", "ComputeResource"}, cluster},
		{ZoneCat, ZoneB, []string{"ClusterComputeResource", "ComputeResource"}, host},
	} {
		catID := ""
		if cat, err := tm.GetCategory(ctx, a.category); err == nil {
			catID = cat.ID
		} else if catID, err = tm.CreateCategory(ctx, &tags.Category{Name: a.category, Cardinality: "SINGLE", AssociableTypes: a.types}); err != nil {
			t.Fatal(err)
		}
		tagID, err := tm.CreateTag(ctx, &tags.Tag{Name: a.tag, CategoryID: catID})
		if err != nil {
			t.Fatal(err)
		}
		if err := tm.AttachTag(ctx, tagID, a.obj); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// hwVersion is the number of a hardware version ("vmx-13" → 13).
func hwVersion(v string) int32 {
	n, _ := strconv.Atoi(strings.TrimPrefix(v, "vmx-"))
	return int32(n)
}

// checkLoopback refuses a listen address that is not loopback.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("vspheretest: listen address %q: %w", hostport, err)
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("vspheretest: listen address %q is not a loopback address: give Options.Within to listen inside a test's own network namespace", hostport)
	}
	return nil
}

// newClient is govmomi.NewClient with the given dialer.
func newClient(ctx context.Context, u *url.URL, dial func(ctx context.Context, network, address string) (net.Conn, error)) (*govmomi.Client, error) {
	sc := soap.NewClient(u, true)
	if dial != nil {
		// The SOAP client dials TLS itself (DialTLSContext, with a plain net dialer): both dials
		// must take the given dialer, or the client would reach for the address from here.
		t := sc.DefaultTransport()
		t.DialContext = dial
		t.DialTLSContext = func(ctx context.Context, network, address string) (net.Conn, error) {
			raw, err := dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, t.TLSClientConfig)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, err
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, u.User); err != nil {
		return nil, err
	}
	return c, nil
}

func moveCdromToIDE(t testing.TB, ctx context.Context, finder *find.Finder, name string) {
	t.Helper()
	vm, err := finder.VirtualMachine(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cdroms := devices.SelectByType((*types.VirtualCdrom)(nil))
	if len(cdroms) == 0 {
		return
	}
	if err := vm.RemoveDevice(ctx, false, cdroms...); err != nil {
		t.Fatal(err)
	}
	ide, err := devices.FindIDEController("")
	if err != nil {
		t.Fatal(err)
	}
	cdrom, err := devices.CreateCdrom(ide)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDevice(ctx, cdrom); err != nil {
		t.Fatal(err)
	}
}

// VMNames lists every VM of the simulator, sorted.
func (e *Env) VMNames(t testing.TB, ctx context.Context) []string {
	t.Helper()
	m := view.NewManager(e.Client.Client)
	v, err := m.CreateContainerView(ctx, e.Client.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Destroy(ctx)
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vm := range vms {
		names = append(names, vm.Name)
	}
	slices.Sort(names)
	return names
}
