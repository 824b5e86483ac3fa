package infra

import (
	"encoding/json"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"
)

// The analysis of the engine's JSON plan (its shape from `show -json`): a pure function, so a
// synthetic plan is enough here; the real engines' plans are analysed in the integration tests.
func TestAnalyse(t *testing.T) {
	const js = `{"format_version":"1.2","resource_changes":[
	 {"address":"vsphere_folder.main","type":"vsphere_folder","change":{"actions":["no-op"]}},
	 {"address":"vsphere_virtual_machine.node","type":"vsphere_virtual_machine","change":{"actions":["delete","create"],"replace_paths":[["clone",0,"template_uuid"]]}},
	 {"address":"vsphere_virtual_machine.other","type":"vsphere_virtual_machine","change":{"actions":["update"]}},
	 {"address":"vsphere_resource_pool.zone","type":"vsphere_resource_pool","change":{"actions":["delete"]}},
	 {"address":"vsphere_virtual_disk.data","type":"vsphere_virtual_disk","change":{"actions":["create"]}},
	 {"address":"data.vsphere_datacenter.dc","type":"vsphere_datacenter","change":{"actions":["read"]}}
	]}`
	var tp tfjson.Plan
	if err := json.Unmarshal([]byte(js), &tp); err != nil {
		t.Fatal(err)
	}
	p := analyse("lab-master-0", &tp, []string{"vsphere_virtual_machine", "vsphere_virtual_disk"})
	var got []string
	for _, c := range p.Changes {
		got = append(got, c.Address+"="+string(c.Action)+map[bool]string{true: "!", false: ""}[c.Destructive])
	}
	want := "vsphere_resource_pool.zone=delete vsphere_virtual_disk.data=create vsphere_virtual_machine.node=replace! vsphere_virtual_machine.other=update"
	if strings.Join(got, " ") != want {
		t.Errorf("changes:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if d := p.Destructive(); len(d) != 1 || d[0].ReplacePaths[0] != "clone.0.template_uuid" {
		t.Errorf("destructive: %+v", d)
	}
	if p.Status() != "DestructiveOutOfSync" {
		t.Errorf("status %s", p.Status())
	}
	var text strings.Builder
	if err := p.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"-/+ vsphere_virtual_machine.node (replace) because clone.0.template_uuid cannot change in place  DESTRUCTIVE", "  ~ vsphere_virtual_machine.other (update)", "1 to add, 1 to change, 1 to replace, 1 to destroy"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, text.String())
		}
	}
	empty := analyse("s", &tfjson.Plan{}, nil)
	if empty.HasChanges() || empty.Status() != "InSync" {
		t.Errorf("empty plan: %+v %s", empty, empty.Status())
	}
}

func TestCLIConfigOnlyTheMirror(t *testing.T) {
	c := cliConfig("/plugins", []string{"hashicorp/vsphere"})
	for _, w := range []string{`path    = "/plugins"`, `"registry.opentofu.org/hashicorp/vsphere"`, `"registry.terraform.io/hashicorp/vsphere"`, `exclude = ["*/*/*"]`, "disable_checkpoint = true"} {
		if !strings.Contains(c, w) {
			t.Errorf("CLI config lacks %s:\n%s", w, c)
		}
	}
}
