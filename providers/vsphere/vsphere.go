// Package vsphere is the vSphere provider: VsphereClusterConfiguration (its schema is
// candi/cloud-providers/vsphere/openapi), the Terraform layout terraform/vsphere/standard, and
// what Terraform does badly, done with govmomi: the preflight (credentials and every object the
// configuration names), the discovery of the datacenter and the zones' compute resources from
// their tags, and the recovery of VMs a killed apply made but never saved.
package vsphere

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/providers"
	"github.com/dhctl-dev/dhctl/terraform"
)

// Name is the cloud.provider value.
const Name = "vSphere"

// apiTimeout bounds every call to vCenter.
const apiTimeout = time.Minute

// Config is the part of VsphereClusterConfiguration the Go side reads (Terraform reads it all).
type Config struct {
	Provider struct {
		Server   string `json:"server"`
		Username string `json:"username"`
		Password string `json:"password"`
		Insecure bool   `json:"insecure"`
	} `json:"provider"`
	Layout            string          `json:"layout"`
	VMFolderPath      string          `json:"vmFolderPath"`
	RegionTagCategory string          `json:"regionTagCategory"`
	ZoneTagCategory   string          `json:"zoneTagCategory"`
	Region            string          `json:"region"`
	Zones             []string        `json:"zones"`
	MasterNodeGroup   NodeGroup       `json:"masterNodeGroup"`
	NodeGroups        []NodeGroup     `json:"nodeGroups"`
	Raw               json.RawMessage `json:"-"`
}

// NodeGroup is masterNodeGroup or an entry of nodeGroups.
type NodeGroup struct {
	Name          string          `json:"name"`
	Replicas      int             `json:"replicas"`
	Zones         []string        `json:"zones"`
	InstanceClass InstanceClass   `json:"instanceClass"`
	NodeTemplate  json.RawMessage `json:"nodeTemplate,omitempty"`
}

// InstanceClass is what a VM is made of.
type InstanceClass struct {
	NumCPUs            int      `json:"numCPUs"`
	Memory             int      `json:"memory"`
	Template           string   `json:"template"`
	MainNetwork        string   `json:"mainNetwork"`
	AdditionalNetworks []string `json:"additionalNetworks"`
	Datastore          string   `json:"datastore"`
	RootDiskSize       int      `json:"rootDiskSize"`
	ResourcePool       string   `json:"resourcePool"`
}

// Provider is the vSphere provider for one configuration.
type Provider struct {
	c      *config.Cluster
	cfg    Config
	prefix string
}

// New reads the configuration's VsphereClusterConfiguration (validated by its schema already).
func New(c *config.Cluster) (providers.Provider, error) {
	if c.ProviderClusterConfiguration == nil {
		return nil, errors.New("vSphere: no VsphereClusterConfiguration document")
	}
	raw, err := json.Marshal(c.ProviderClusterConfiguration.Object)
	if err != nil {
		return nil, err
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("VsphereClusterConfiguration: %w", err)
	}
	cfg.Raw = raw
	if cfg.RegionTagCategory == "" {
		cfg.RegionTagCategory = "k8s-region"
	}
	if cfg.ZoneTagCategory == "" {
		cfg.ZoneTagCategory = "k8s-zone"
	}
	p := &Provider{c: c, cfg: cfg}
	if cc := c.ClusterConfiguration.Cloud; cc != nil {
		p.prefix = cc.Prefix
	}
	return p, nil
}

func (p *Provider) Name() string      { return Name }
func (p *Provider) Sources() []string { return []string{"hashicorp/vsphere"} }
func (p *Provider) DestructiveTypes() []string {
	return []string{"vsphere_virtual_machine", "vsphere_virtual_disk"}
}

// Module is terraform/vsphere/<layout>/<step> from the embedded tree.
func (p *Provider) Module(layout, step string) (fs.FS, error) {
	if layout == "" {
		layout = p.cfg.Layout
	}
	dir := "vsphere/" + strings.ToLower(layout) + "/" + step
	if _, err := fs.Stat(terraform.FS, dir); err != nil {
		return nil, fmt.Errorf("VsphereClusterConfiguration layout %q: this dhctl has no Terraform module %s (layouts: Standard)", layout, dir)
	}
	return fs.Sub(terraform.FS, dir)
}

// Nodes are the masters of masterNodeGroup, then every nodeGroups entry's replicas. Each keeps
// its group's settings as the document has them (every field, not only those read here): a
// machine whose group later shrinks or goes away is destroyed with them (providers.Steps.Leftover).
func (p *Provider) Nodes(*config.Cluster) ([]providers.NodeSpec, error) {
	var raw struct {
		MasterNodeGroup json.RawMessage   `json:"masterNodeGroup"`
		NodeGroups      []json.RawMessage `json:"nodeGroups"`
	}
	if err := json.Unmarshal(p.cfg.Raw, &raw); err != nil {
		return nil, fmt.Errorf("VsphereClusterConfiguration: %w", err)
	}
	var out []providers.NodeSpec
	add := func(g NodeGroup, settings json.RawMessage, group, step string, role inventory.Role) {
		for i := range g.Replicas {
			out = append(out, providers.NodeSpec{Name: fmt.Sprintf("%s-%s-%d", p.prefix, group, i), NodeGroup: group,
				Index: i, Role: role, Step: step, Settings: settings})
		}
	}
	add(p.cfg.MasterNodeGroup, raw.MasterNodeGroup, "master", providers.MasterNode, inventory.Master)
	for i, g := range p.cfg.NodeGroups {
		add(g, raw.NodeGroups[i], g.Name, providers.StaticNode, inventory.Worker)
	}
	return out, nil
}

// Machine reads a node step's outputs (Deckhouse's names).
func (p *Provider) Machine(spec providers.NodeSpec, out map[string]json.RawMessage) (inventory.Host, error) {
	str := func(name string) (string, error) {
		raw, ok := out[name]
		if !ok {
			return "", fmt.Errorf("node %s: the %s step has no output %q", spec.Name, spec.Step, name)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || net.ParseIP(s) == nil {
			return "", fmt.Errorf("node %s: output %s is %s, not an IP address (without mainNetworkIPAddresses the VM's address comes from VMware Tools: is it installed in the template?)", spec.Name, name, raw)
		}
		return s, nil
	}
	ip, err := str("node_internal_ip_address")
	if err != nil {
		return inventory.Host{}, err
	}
	ssh := ip
	if spec.Step == providers.MasterNode {
		if ssh, err = str("master_ip_address_for_ssh"); err != nil {
			return inventory.Host{}, err
		}
	}
	return inventory.Host{SSH: ssh, IP: ip, Role: spec.Role, Name: spec.Name, NodeGroup: spec.NodeGroup}, nil
}

// session is a logged-in connection to vCenter (SOAP and REST, for tags).
type session struct {
	vim  *govmomi.Client
	rest *rest.Client
	tags *tags.Manager
}

func (p *Provider) connect(ctx context.Context) (*session, error) {
	server := p.cfg.Provider.Server
	u, err := url.Parse("https://" + server + "/sdk")
	if err != nil || server == "" {
		return nil, fmt.Errorf("VsphereClusterConfiguration provider.server %q is not a host name or address of vCenter", server)
	}
	if strings.Contains(server, "://") {
		if u, err = url.Parse(server); err != nil {
			return nil, fmt.Errorf("VsphereClusterConfiguration provider.server: %w", err)
		}
		if u.Path == "" {
			u.Path = "/sdk"
		}
	}
	u.User = url.UserPassword(p.cfg.Provider.Username, p.cfg.Provider.Password)
	vim, err := govmomi.NewClient(ctx, u, p.cfg.Provider.Insecure)
	if err != nil {
		return nil, fmt.Errorf("vCenter %s: logging in as %s: %w (check provider.server, provider.username and provider.password; provider.insecure for a self-signed certificate)",
			u.Host, p.cfg.Provider.Username, redactedErr(err, p.cfg.Provider.Password))
	}
	rc := rest.NewClient(vim.Client)
	if err := rc.Login(ctx, url.UserPassword(p.cfg.Provider.Username, p.cfg.Provider.Password)); err != nil {
		vim.Logout(ctx)
		return nil, fmt.Errorf("vCenter %s: REST login (for tags) as %s: %w", u.Host, p.cfg.Provider.Username, redactedErr(err, p.cfg.Provider.Password))
	}
	return &session{vim: vim, rest: rc, tags: tags.NewManager(rc)}, nil
}

func (s *session) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.rest.Logout(ctx)
	_ = s.vim.Logout(ctx)
}

// redactedErr keeps a password out of an error's text (some SOAP faults echo the request).
func redactedErr(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "<redacted>"))
}

// tagged lists the objects of the given type carrying tag name of category.
func (s *session) tagged(ctx context.Context, category, name, kind string) ([]types.ManagedObjectReference, error) {
	cat, err := s.tags.GetCategory(ctx, category)
	if err != nil {
		return nil, fmt.Errorf("tag category %q: %w (create it, or set VsphereClusterConfiguration regionTagCategory/zoneTagCategory)", category, err)
	}
	all, err := s.tags.GetTagsForCategory(ctx, cat.ID)
	if err != nil {
		return nil, fmt.Errorf("tags of category %q: %w", category, err)
	}
	var tagID string
	for _, t := range all {
		if t.Name == name {
			tagID = t.ID
		}
	}
	if tagID == "" {
		return nil, fmt.Errorf("no tag %q in category %q", name, category)
	}
	objs, err := s.tags.ListAttachedObjects(ctx, tagID)
	if err != nil {
		return nil, fmt.Errorf("objects tagged %s/%s: %w", category, name, err)
	}
	var out []types.ManagedObjectReference
	for _, o := range objs {
		if ref := o.Reference(); ref.Type == kind || kind == "" {
			out = append(out, ref)
		}
	}
	return out, nil
}

// Discovery is what dhctl learns from vCenter: the cluster's datacenter and where each zone is.
// It is stored in d8-provider-cluster-configuration (cloud-provider-discovery-data.json).
type Discovery struct {
	Datacenter           string            `json:"datacenter"`
	Zones                []string          `json:"zones"`
	ZoneComputeResources map[string]string `json:"zoneComputeResources"` // zone → inventory path
}

// discover finds the datacenter tagged with the region and the compute resource tagged with each
// zone.
func (p *Provider) discover(ctx context.Context, s *session) (*Discovery, *object.Datacenter, error) {
	dcs, err := s.tagged(ctx, p.cfg.RegionTagCategory, p.cfg.Region, "Datacenter")
	if err != nil {
		return nil, nil, fmt.Errorf("VsphereClusterConfiguration region %q: %w", p.cfg.Region, err)
	}
	if len(dcs) != 1 {
		return nil, nil, fmt.Errorf("VsphereClusterConfiguration region %q: %d datacenters carry the tag %s/%s, want exactly one: tag the cluster's datacenter", p.cfg.Region, len(dcs), p.cfg.RegionTagCategory, p.cfg.Region)
	}
	finder := find.NewFinder(s.vim.Client, false)
	ref, err := finder.ObjectReference(ctx, dcs[0])
	if err != nil {
		return nil, nil, err
	}
	dc := ref.(*object.Datacenter)
	d := &Discovery{Datacenter: dc.InventoryPath, Zones: p.cfg.Zones, ZoneComputeResources: map[string]string{}}
	for _, z := range p.cfg.Zones {
		refs, err := s.tagged(ctx, p.cfg.ZoneTagCategory, z, "")
		if err != nil {
			return nil, nil, fmt.Errorf("VsphereClusterConfiguration zones: zone %q: %w", z, err)
		}
		for _, r := range refs {
			if r.Type != "ClusterComputeResource" && r.Type != "ComputeResource" {
				continue
			}
			o, err := finder.ObjectReference(ctx, r)
			if err != nil {
				return nil, nil, err
			}
			var path string
			switch c := o.(type) {
			case *object.ClusterComputeResource:
				path = c.InventoryPath
			case *object.ComputeResource:
				path = c.InventoryPath
			}
			if path != "" {
				d.ZoneComputeResources[z] = strings.TrimPrefix(path, dc.InventoryPath+"/host/")
			}
		}
		if _, ok := d.ZoneComputeResources[z]; !ok {
			return nil, nil, fmt.Errorf("VsphereClusterConfiguration zones: no cluster or host carries the zone tag %s/%s: tag the zone's cluster", p.cfg.ZoneTagCategory, z)
		}
	}
	return d, dc, nil
}

// Discover logs in and returns the discovery data, for the step variables and the in-cluster
// state.
func (p *Provider) Discover(ctx context.Context) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	s, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close(ctx)
	d, _, err := p.discover(ctx, s)
	if err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// DiscoveryVars: the layout takes the zones' compute resources (the provider cannot turn a
// tagged object into a path).
func (p *Provider) DiscoveryVars(discovery json.RawMessage) (map[string]any, error) {
	var d Discovery
	if len(discovery) > 0 {
		if err := json.Unmarshal(discovery, &d); err != nil {
			return nil, fmt.Errorf("vSphere discovery data: %w", err)
		}
	}
	if d.ZoneComputeResources == nil {
		d.ZoneComputeResources = map[string]string{}
	}
	return map[string]any{"zoneComputeResources": d.ZoneComputeResources, "datacenter": d.Datacenter}, nil
}

var _ providers.Provider = (*Provider)(nil)

// Preflight checks the credentials and that every object the configuration names exists, each
// missing one named with the field that names it. Every problem is reported, not only the first.
func (p *Provider) Preflight(ctx context.Context, _ *config.Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	s, err := p.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	_, dc, err := p.discover(ctx, s)
	if err != nil {
		return err
	}
	finder := find.NewFinder(s.vim.Client, false)
	finder.SetDatacenter(dc)
	var problems []string
	check := func(field, what, name string, lookup func(context.Context, string) error) {
		if name == "" {
			return
		}
		if err := lookup(ctx, name); err != nil {
			var nf *find.NotFoundError
			if errors.As(err, &nf) {
				problems = append(problems, fmt.Sprintf("%s: %s %q not found in datacenter %s", field, what, name, dc.InventoryPath))
			} else {
				problems = append(problems, fmt.Sprintf("%s: %s %q: %v", field, what, name, err))
			}
		}
	}
	groups := append([]NodeGroup{p.cfg.MasterNodeGroup}, p.cfg.NodeGroups...)
	for i, g := range groups {
		field := "masterNodeGroup.instanceClass"
		if i > 0 {
			field = fmt.Sprintf("nodeGroups[%d].instanceClass", i-1)
		}
		ic := g.InstanceClass
		check(field+".datastore", "datastore", ic.Datastore, func(ctx context.Context, n string) error { _, err := finder.Datastore(ctx, n); return err })
		check(field+".mainNetwork", "network", ic.MainNetwork, func(ctx context.Context, n string) error { _, err := finder.Network(ctx, n); return err })
		for j, n := range ic.AdditionalNetworks {
			check(fmt.Sprintf("%s.additionalNetworks[%d]", field, j), "network", n, func(ctx context.Context, n string) error { _, err := finder.Network(ctx, n); return err })
		}
		check(field+".template", "template VM", ic.Template, func(ctx context.Context, n string) error { _, err := finder.VirtualMachine(ctx, n); return err })
	}
	if len(problems) > 0 {
		return fmt.Errorf("vSphere preflight: %d object(s) the configuration names do not exist (fix the names in VsphereClusterConfiguration):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// vmAddress is the resource address of a node step's VM in the layout.
func vmAddress(step string) string {
	if step == providers.MasterNode {
		return "vsphere_virtual_machine.master"
	}
	return "vsphere_virtual_machine.node"
}

// Orphans finds what an apply killed before the engine saved its state made of a node: its VM,
// imported instead of cloned again (which would fail with DuplicateName, and leave the VM outside
// any state), and a master's data disk, made before the VM and imported on its own when the kill
// came between the two (creating it again fails with FileAlreadyExists).
func (p *Provider) Orphans(ctx context.Context, _ *config.Cluster, uuid string, spec providers.NodeSpec, state []byte) ([]providers.Import, error) {
	addr := vmAddress(spec.Step)
	// The master's etcd disk is a resource of its own (it outlives a replaced VM).
	const disk = "vsphere_virtual_disk.kubernetes_data"
	wantVM := !stateHas(state, addr)
	wantDisk := spec.Step == providers.MasterNode && !stateHas(state, disk)
	if !wantVM && !wantDisk {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	s, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close(ctx)
	_, dc, err := p.discover(ctx, s)
	if err != nil {
		return nil, err
	}
	finder := find.NewFinder(s.vim.Client, false)
	finder.SetDatacenter(dc)
	var imports []providers.Import
	if wantVM {
		path := strings.TrimSuffix(dc.InventoryPath, "/") + "/vm/" + strings.Trim(p.cfg.VMFolderPath, "/") + "/" + spec.Name
		_, err := finder.VirtualMachine(ctx, path)
		var nf *find.NotFoundError
		switch {
		case err == nil:
			imports = append(imports, providers.Import{Address: addr, ID: path})
		case !errors.As(err, &nf):
			return nil, fmt.Errorf("node %s: looking for a VM left by an interrupted run at %s: %w", spec.Name, path, err)
		}
	}
	if wantDisk {
		dsName := p.cfg.MasterNodeGroup.InstanceClass.Datastore
		ds, err := finder.Datastore(ctx, dsName)
		if err != nil {
			return nil, fmt.Errorf("node %s: datastore %q: %w", spec.Name, dsName, err)
		}
		file := fmt.Sprintf("deckhouse/%s-kubernetes-data-%d.vmdk", uuid, spec.Index)
		_, err = ds.Stat(ctx, file)
		var noFile object.DatastoreNoSuchFileError
		var noDir object.DatastoreNoSuchDirectoryError
		switch {
		case err == nil:
			imports = append(imports, providers.Import{Address: disk, ID: fmt.Sprintf("%s/[%s] %s", dc.InventoryPath, dsName, file)})
		case !errors.As(err, &noFile) && !errors.As(err, &noDir):
			return nil, fmt.Errorf("node %s: looking for a data disk left by an interrupted run at [%s] %s: %w", spec.Name, dsName, file, err)
		}
	}
	return imports, nil
}

// stateHas reports whether a Terraform state JSON holds a managed resource at address.
func stateHas(state []byte, address string) bool {
	var st struct {
		Resources []struct {
			Mode, Type, Name string
			Instances        []json.RawMessage
		} `json:"resources"`
	}
	if len(state) == 0 || json.Unmarshal(state, &st) != nil {
		return false
	}
	for _, r := range st.Resources {
		if r.Mode == "managed" && r.Type+"."+r.Name == address && len(r.Instances) > 0 {
			return true
		}
	}
	return false
}
