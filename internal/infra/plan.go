package infra

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"
)

// Action is what a plan does to one resource.
type Action string

const (
	Create  Action = "create"
	Update  Action = "update"  // in place
	Replace Action = "replace" // delete and create (either order)
	Delete  Action = "delete"
	Read    Action = "read"
	NoOp    Action = "no-op"
)

// Change is one resource's planned change.
type Change struct {
	Address string `json:"address"`
	Type    string `json:"type"`
	Action  Action `json:"action"`
	// ReplacePaths are the attributes forcing a replace ("clone.0.template_uuid").
	ReplacePaths []string `json:"replacePaths,omitempty"`
	// Destructive: a delete or replace of a resource the provider names destructive (its VMs,
	// its data disks): what was on it is lost.
	Destructive bool `json:"destructive"`
}

// Plan is a step's analysed plan, ready to be shown and applied.
type Plan struct {
	Step    string   `json:"step"`
	Changes []Change `json:"changes"` // without no-ops and reads

	file string
	ws   *workspace
}

// HasChanges reports whether applying the plan changes anything.
func (p *Plan) HasChanges() bool { return len(p.Changes) > 0 }

// Destructive lists the changes that destroy data.
func (p *Plan) Destructive() []Change {
	var out []Change
	for _, c := range p.Changes {
		if c.Destructive {
			out = append(out, c)
		}
	}
	return out
}

// analyse turns the engine's JSON plan into changes.
func analyse(step string, tp *tfjson.Plan, destructiveTypes []string) *Plan {
	p := &Plan{Step: step}
	for _, rc := range tp.ResourceChanges {
		if rc == nil || rc.Change == nil {
			continue
		}
		a := actionOf(rc.Change.Actions)
		if a == NoOp || a == Read {
			continue
		}
		c := Change{Address: rc.Address, Type: rc.Type, Action: a}
		for _, path := range rc.Change.ReplacePaths {
			c.ReplacePaths = append(c.ReplacePaths, pathString(path))
		}
		c.Destructive = (a == Replace || a == Delete) && slices.Contains(destructiveTypes, rc.Type)
		p.Changes = append(p.Changes, c)
	}
	sort.SliceStable(p.Changes, func(i, j int) bool { return p.Changes[i].Address < p.Changes[j].Address })
	return p
}

func actionOf(a tfjson.Actions) Action {
	switch {
	case a.Replace():
		return Replace
	case a.Create():
		return Create
	case a.Update():
		return Update
	case a.Delete():
		return Delete
	case a.Read():
		return Read
	}
	return NoOp
}

// pathString renders an attribute path from the plan JSON (["clone", 0, "template_uuid"]).
func pathString(path any) string {
	parts, ok := path.([]any)
	if !ok {
		return fmt.Sprint(path)
	}
	var s []string
	for _, p := range parts {
		switch v := p.(type) {
		case float64:
			s = append(s, fmt.Sprintf("%d", int(v)))
		case json.Number:
			s = append(s, v.String())
		default:
			s = append(s, fmt.Sprint(v))
		}
	}
	return strings.Join(s, ".")
}

// WriteText prints the plan the way the engines do: one line per resource with its symbol.
func (p *Plan) WriteText(w io.Writer) error {
	if !p.HasChanges() {
		_, err := fmt.Fprintf(w, "%s: no changes (in sync)\n", p.Step)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", p.Step)
	counts := map[Action]int{}
	for _, c := range p.Changes {
		counts[c.Action]++
		sym := map[Action]string{Create: "  +", Update: "  ~", Replace: "-/+", Delete: "  -"}[c.Action]
		line := fmt.Sprintf("%s %s (%s)", sym, c.Address, c.Action)
		if len(c.ReplacePaths) > 0 {
			line += " because " + strings.Join(c.ReplacePaths, ", ") + " cannot change in place"
		}
		if c.Destructive {
			line += "  DESTRUCTIVE: its data is lost"
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "  %d to add, %d to change, %d to replace, %d to destroy\n", counts[Create], counts[Update], counts[Replace], counts[Delete])
	_, err := io.WriteString(w, b.String())
	return err
}

// Status is a step's plan summarised as Deckhouse's `terraform check` reports it.
func (p *Plan) Status() string {
	switch {
	case len(p.Destructive()) > 0:
		return "DestructiveOutOfSync"
	case p.HasChanges():
		return "OutOfSync"
	}
	return "InSync"
}
