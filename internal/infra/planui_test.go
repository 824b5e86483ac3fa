package infra

import (
	"bytes"
	"strings"
	"testing"
)

// What OpenTofu and Terraform print for plan -json (abridged to the fields read), split at
// awkward places as a pipe delivers it.
const uiSample = `{"@level":"info","@message":"OpenTofu 1.10.6","type":"version","tofu":"1.10.6","ui":"1.2"}
{"@level":"info","@message":"vsphere_virtual_disk.data: Plan to create","type":"planned_change","change":{"resource":{"addr":"vsphere_virtual_disk.data","resource_type":"vsphere_virtual_disk"},"action":"create"}}
{"@level":"info","@message":"vsphere_virtual_machine.vm: Plan to update","type":"planned_change","change":{"resource":{"addr":"vsphere_virtual_machine.vm","resource_type":"vsphere_virtual_machine"},"action":"update"}}
{"@level":"info","@message":"data.vsphere_datacenter.dc: Plan to read","type":"planned_change","change":{"resource":{"addr":"data.vsphere_datacenter.dc","resource_type":"vsphere_datacenter"},"action":"read"}}
{"@level":"info","@message":"vsphere_folder.old: Plan to delete","type":"planned_change","change":{"resource":{"addr":"vsphere_folder.old","resource_type":"vsphere_folder"},"action":"delete"}}
{"@level":"info","@message":"Plan: 1 to add, 1 to change, 1 to destroy.","type":"change_summary","changes":{"add":1,"change":1,"remove":1}}
not json at all
{"@level":"error","@message":"Error: Resource precondition failed","type":"diagnostic","diagnostic":{"severity":"error","summary":"Resource precondition failed","detail":"nodeGroups[0] has no address\nfor node 2"}}`

func feed(t *testing.T, chunk int) *planUI {
	t.Helper()
	var log bytes.Buffer
	u := &planUI{log: &log}
	data := []byte(uiSample)
	for len(data) > 0 {
		n := min(chunk, len(data))
		if _, err := u.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	u.flush()
	for _, want := range []string{"OpenTofu 1.10.6\n", "vsphere_folder.old: Plan to delete\n", "not json at all\n", "Error: Resource precondition failed\n  nodeGroups[0] has no address for node 2\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("chunks of %d: the log lacks %q:\n%s", chunk, want, log.String())
		}
	}
	return u
}

func TestPlanUI(t *testing.T) {
	for _, chunk := range []int{1, 7, 4096} {
		u := feed(t, chunk)
		if len(u.changes) != 4 || len(u.errors) != 1 || u.errors[0] != "Resource precondition failed: nodeGroups[0] has no address for node 2" {
			t.Fatalf("chunks of %d: changes %v, errors %q", chunk, u.changes, u.errors)
		}
		p, ok := analyseUI("s", u.changes, []string{"vsphere_virtual_disk", "vsphere_folder"})
		if !ok {
			t.Fatal("plain creates, updates and deletes need no plan file")
		}
		got := []string{}
		for _, c := range p.Changes {
			got = append(got, c.Address+" "+string(c.Action)+map[bool]string{true: " destructive"}[c.Destructive])
		}
		want := "vsphere_folder.old delete destructive,vsphere_virtual_disk.data create,vsphere_virtual_machine.vm update"
		if strings.Join(got, ",") != want {
			t.Errorf("changes %v, want %s", got, want)
		}
	}
	// A replace's reasons, and actions this dhctl does not know, are in the plan file only.
	for _, action := range []string{"replace", "move", "import", "remove", "forget", ""} {
		if _, ok := analyseUI("s", []uiChange{{"a.b", "a", action}}, nil); ok {
			t.Errorf("action %q analysed without the plan file", action)
		}
	}
	// A line that never ends is passed on, bounded.
	var log bytes.Buffer
	u := &planUI{log: &log}
	u.Write(bytes.Repeat([]byte("x"), maxUILine+10))
	if len(u.buf) != 0 || log.Len() < maxUILine {
		t.Errorf("an endless line is kept (%d bytes) or lost (%d logged)", len(u.buf), log.Len())
	}
}
