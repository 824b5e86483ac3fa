package vspheretest

import (
	"context"
	"io/fs"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Inventory is everything the simulator holds that a cluster could leave behind, sorted: every
// managed entity as "<type> <inventory path>" (folders, resource pools, VMs, ...) and every file
// and directory on its datastores as "file [<datastore>] <path>" (disks, a VM's files). Two
// calls compare equal when nothing was made or everything made was removed.
func (e *Env) Inventory(t testing.TB, ctx context.Context) []string {
	t.Helper()
	m := view.NewManager(e.Client.Client)
	v, err := m.CreateContainerView(ctx, e.Client.ServiceContent.RootFolder, []string{"ManagedEntity"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Destroy(ctx)
	var entities []mo.ManagedEntity
	if err := v.Retrieve(ctx, []string{"ManagedEntity"}, []string{"name", "parent"}, &entities); err != nil {
		t.Fatal(err)
	}
	byRef := map[types.ManagedObjectReference]mo.ManagedEntity{}
	for _, en := range entities {
		byRef[en.Self] = en
	}
	pathOf := func(en mo.ManagedEntity) string {
		parts := []string{en.Name}
		for p := en.Parent; p != nil; {
			parent, ok := byRef[*p]
			if !ok {
				break // the root folder: not in its own view
			}
			parts = append(parts, parent.Name)
			p = parent.Parent
		}
		slices.Reverse(parts)
		return "/" + path.Join(parts...)
	}
	var out []string
	for _, en := range entities {
		out = append(out, en.Self.Type+" "+pathOf(en))
	}

	// The simulator keeps a datastore's files in a local directory: its info.url.
	dv, err := m.CreateContainerView(ctx, e.Client.ServiceContent.RootFolder, []string{"Datastore"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer dv.Destroy(ctx)
	var stores []mo.Datastore
	if err := dv.Retrieve(ctx, []string{"Datastore"}, []string{"name", "info"}, &stores); err != nil {
		t.Fatal(err)
	}
	for _, ds := range stores {
		info := ds.Info.GetDatastoreInfo()
		dir := info.Url
		if u, err := url.Parse(info.Url); err == nil && u.Scheme != "" {
			dir = u.Path
		}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			switch {
			case rel == ".":
			case d.IsDir():
				out = append(out, "file ["+ds.Name+"] "+filepath.ToSlash(rel)+"/")
			default:
				out = append(out, "file ["+ds.Name+"] "+filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("listing datastore %s (%s): %v", ds.Name, dir, err)
		}
	}
	slices.Sort(out)
	return out
}

// WithoutDiskDirs is inv less the datastore directories the layout's data disks live in
// (deckhouse/ on any datastore). The directory is shared by every cluster whose disks are on
// that datastore, so a destroy leaves it, empty: removing it could race another cluster's
// disk being made in it (vSphere deletes a directory with all it holds).
func WithoutDiskDirs(inv []string) []string {
	return slices.DeleteFunc(slices.Clone(inv), func(s string) bool {
		return strings.HasPrefix(s, "file [") && strings.HasSuffix(s, "] deckhouse/")
	})
}
