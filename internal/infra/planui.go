package infra

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// planUI reads the engine's machine-readable plan output (plan -json: one JSON message a line).
// Its planned_change messages give each resource's action, so a plan needs no `show` of its file
// afterwards, which would start the provider once more. The human text of every message goes on
// to the step's log; error diagnostics are kept for the error.
type planUI struct {
	log     io.Writer
	buf     []byte
	changes []uiChange
	errors  []string
}

type uiChange struct{ address, resourceType, action string }

// maxUILine bounds a line kept while its end has not come: a longer one is passed on as it is.
const maxUILine = 1 << 20

func (u *planUI) Write(p []byte) (int, error) {
	u.buf = append(u.buf, p...)
	for {
		i := bytes.IndexByte(u.buf, '\n')
		if i < 0 {
			break
		}
		u.line(u.buf[:i])
		u.buf = u.buf[i+1:]
	}
	if len(u.buf) > maxUILine {
		u.line(u.buf)
		u.buf = nil
	}
	return len(p), nil
}

// flush handles a last line without a newline.
func (u *planUI) flush() {
	if len(u.buf) > 0 {
		u.line(u.buf)
		u.buf = nil
	}
}

func (u *planUI) line(b []byte) {
	var m struct {
		Message string `json:"@message"`
		Type    string `json:"type"`
		Change  struct {
			Resource struct {
				Addr string `json:"addr"`
				Type string `json:"resource_type"`
			} `json:"resource"`
			Action string `json:"action"`
		} `json:"change"`
		Diagnostic struct {
			Severity string `json:"severity"`
			Summary  string `json:"summary"`
			Detail   string `json:"detail"`
		} `json:"diagnostic"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Type == "" {
		fmt.Fprintf(u.log, "%s\n", b)
		return
	}
	fmt.Fprintf(u.log, "%s\n", m.Message)
	switch m.Type {
	case "planned_change":
		u.changes = append(u.changes, uiChange{m.Change.Resource.Addr, m.Change.Resource.Type, m.Change.Action})
	case "diagnostic":
		d := m.Diagnostic
		if d.Detail != "" {
			fmt.Fprintf(u.log, "  %s\n", strings.Join(strings.Fields(d.Detail), " "))
		}
		if d.Severity == "error" {
			msg := d.Summary
			if d.Detail != "" {
				msg += ": " + strings.Join(strings.Fields(d.Detail), " ")
			}
			u.errors = append(u.errors, msg)
		}
	}
}

// analyseUI turns the planned changes into a Plan. It declines (false) when a change needs what
// only the plan file holds, a replace's reasons, or is an action this dhctl does not know:
// the caller then reads the plan file.
func analyseUI(step string, changes []uiChange, destructiveTypes []string) (*Plan, bool) {
	p := &Plan{Step: step}
	for _, c := range changes {
		var a Action
		switch c.action {
		case "create":
			a = Create
		case "update":
			a = Update
		case "delete":
			a = Delete
		case "noop", "read":
			continue
		default:
			return nil, false
		}
		p.Changes = append(p.Changes, Change{Address: c.address, Type: c.resourceType, Action: a,
			Destructive: a == Delete && slices.Contains(destructiveTypes, c.resourceType)})
	}
	sort.SliceStable(p.Changes, func(i, j int) bool { return p.Changes[i].Address < p.Changes[j].Address })
	return p, true
}
