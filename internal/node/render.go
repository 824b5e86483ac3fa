package node

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/dhctl-dev/dhctl/internal/inventory"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// Bundle is the rendered bundle of one node: the driver and its steps in order.
type Bundle struct {
	Family OSFamily
	Role   inventory.Role
	Driver []byte
	Steps  []Step
}

// Step is one rendered step script.
type Step struct {
	Name   string // e.g. "030_runtime_packages"
	Script []byte
}

// KubeadmStep joins the node to the cluster (kubeadm init or join): the only step that needs
// the cluster, the steps before it only the machine and the configuration.
const KubeadmStep = "060_kubeadm"

// Preparation is the bundle without the kubeadm step and what follows it: what a machine can
// do before the cluster it will join exists. Its steps are the same scripts as the whole
// bundle's, so the whole bundle run later skips them.
func (b *Bundle) Preparation() *Bundle {
	out := *b
	out.Steps = nil
	for _, s := range b.Steps {
		if s.Name >= KubeadmStep {
			break
		}
		out.Steps = append(out.Steps, s)
	}
	return &out
}

// RemoteDir is where a bundle lives on the node (root-only).
const RemoteDir = "/var/lib/dhctl/bashible/bundle"

// sysctl is one kernel setting the base step enforces.
type sysctl struct{ Key, Value string }

// stepView is what a step template sees: the data plus per-role facts.
type stepView struct {
	Data
	Step                 string
	Ports                []int
	Sysctls              []sysctl
	RequiredTools        []string
	RequiredToolPackages []string
	OptionalTools        []string
}

// Render renders the bundle for d from a candi tree (candi.FS or a development directory): the
// OS family's functions and the common library are prepended to every step, so a step's
// checksum changes whenever anything it runs changes.
func Render(candi fs.FS, d Data) (*Bundle, error) {
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	driver, err := fs.ReadFile(candi, "bashible/bashible.sh")
	if err != nil {
		return nil, fmt.Errorf("bundle: reading the driver: %w", err)
	}
	base := template.New("bundle").Funcs(funcs).Option("missingkey=error")
	for _, p := range []string{"bashible/lib.sh.tpl", "bashible/proxy.sh.tpl", "bashible/packages.sh.tpl", "bashible/bundles/" + string(d.OSFamily) + "/os.sh.tpl"} {
		text, err := fs.ReadFile(candi, p)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if _, err := base.New(p).Parse(string(text)); err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", p, err)
		}
	}
	steps, err := fs.Glob(candi, "bashible/steps/*.sh.tpl")
	if err != nil {
		return nil, err
	}
	sort.Strings(steps)
	if len(steps) == 0 {
		return nil, fmt.Errorf("bundle: no steps under bashible/steps")
	}
	b := &Bundle{Family: d.OSFamily, Role: d.Role, Driver: driver}
	for _, p := range steps {
		name := strings.TrimSuffix(path.Base(p), ".sh.tpl")
		text, err := fs.ReadFile(candi, p)
		if err != nil {
			return nil, err
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.New(p).Parse(string(text)); err != nil {
			return nil, fmt.Errorf("bundle: step %s: %w", name, err)
		}
		view := newView(d, name)
		var out bytes.Buffer
		for _, part := range []string{"bashible/lib.sh.tpl", "bashible/bundles/" + string(d.OSFamily) + "/os.sh.tpl", p} {
			if err := t.ExecuteTemplate(&out, part, view); err != nil {
				return nil, fmt.Errorf("bundle: step %s: %w", name, err)
			}
			out.WriteString("\n")
		}
		b.Steps = append(b.Steps, Step{Name: name, Script: out.Bytes()})
	}
	return b, nil
}

func newView(d Data, step string) stepView {
	v := stepView{
		Data: d, Step: step,
		Sysctls: []sysctl{
			{"net.ipv4.ip_forward", "1"},
			{"net.bridge.bridge-nf-call-iptables", "1"},
			{"net.bridge.bridge-nf-call-ip6tables", "1"},
		},
		// kubeadm's preflight fails without these; the rest only warn.
		RequiredTools:        []string{"iptables", "conntrack", "mount", "nsenter", "ss", "tar", "sha256sum", "systemctl"},
		RequiredToolPackages: []string{"iptables", "conntrack", "iproute2", "tar", "util-linux"},
		OptionalTools:        []string{"socat", "ethtool", "ebtables", "tc"},
		Ports:                []int{10250},
	}
	if d.OSFamily == RHEL {
		v.RequiredToolPackages = []string{"iptables-nft", "conntrack-tools", "iproute", "tar", "util-linux"}
	}
	if d.Role == inventory.Master {
		v.Ports = []int{6443, 2379, 2380, 10250, 10257, 10259}
	}
	return v
}

var funcs = template.FuncMap{
	// quote single-quotes a value for the shell.
	"quote": func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" },
	// hostport joins an address and a port (brackets for IPv6).
	"hostport": func(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) },
	// discoveryKubeconfigPath is where kubeadm join's file discovery reads the cluster.
	"discoveryKubeconfigPath": func() string { return kubeadm.DiscoveryKubeconfigPath },
	// toml is a TOML basic string.
	"toml": tomlString,
	// systemd quotes a value for a unit file (and escapes its % specifiers).
	"systemd": func(s string) string { return tomlString(strings.ReplaceAll(s, "%", "%%")) },
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict needs key/value pairs")
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u` + fmt.Sprintf("%04X", r))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Files is the bundle as uploaded: the driver (0700) and the steps (0600: they hold secrets).
func (b *Bundle) Files() []ssh.File {
	files := []ssh.File{{Path: "bashible.sh", Mode: 0o700, Data: b.Driver}}
	for _, s := range b.Steps {
		files = append(files, ssh.File{Path: "steps/" + s.Name + ".sh", Mode: 0o600, Data: s.Script})
	}
	return files
}

// WriteTo prints the bundle: every file with its path and mode, as shipped.
func (b *Bundle) WriteTo(w io.Writer) (int64, error) {
	var buf bytes.Buffer
	for _, f := range b.Files() {
		fmt.Fprintf(&buf, "### %s/%s (mode %s)\n", RemoteDir, f.Path, strconv.FormatUint(uint64(f.Mode), 8))
		buf.Write(f.Data)
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			buf.WriteString("\n")
		}
	}
	return buf.WriteTo(w)
}
