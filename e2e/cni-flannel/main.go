// Command flannel is a CNI plugin standing in for flannel's own (whose module
// the proxy does not serve): it reads the subnet flanneld leased to this node
// from /run/flannel/subnet.env and delegates to the bridge plugin with
// host-local IPAM for that subnet. The rig ships it as "flannel" in the
// cni-plugins package, so a flannel CNI configuration works unchanged.
//
// CNI protocol: the command comes in CNI_COMMAND, the network configuration
// on stdin; the delegate's result goes to stdout unchanged.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults as in flannel's plugin; the network configuration may override them.
const (
	defaultSubnetFile = "/run/flannel/subnet.env"
	defaultDataDir    = "/var/lib/cni/flannel"
)

// netConf is the part of the network configuration this plugin reads.
type netConf struct {
	CNIVersion string         `json:"cniVersion"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	SubnetFile string         `json:"subnetFile"`
	DataDir    string         `json:"dataDir"`
	Delegate   map[string]any `json:"delegate"`
}

// subnetEnv is what flanneld writes for this node.
type subnetEnv struct {
	Network string // FLANNEL_NETWORK, the whole cluster's pod network
	Subnet  string // FLANNEL_SUBNET, this node's share, e.g. 10.244.1.1/24
	MTU     int    // FLANNEL_MTU
	IPMasq  bool   // FLANNEL_IPMASQ: flanneld masquerades itself, so the bridge must not
}

func main() {
	if err := run(os.Getenv, os.Stdin, os.Stdout); err != nil {
		// CNI errors are JSON on stdout with a non-zero exit.
		msg, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "code": 999, "msg": err.Error()})
		os.Stdout.Write(append(msg, '\n'))
		os.Exit(1)
	}
}

func run(getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	cmd := getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		_, err := fmt.Fprintln(stdout, `{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
		return err
	}
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("flannel: reading the network configuration: %w", err)
	}
	var conf netConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return fmt.Errorf("flannel: network configuration is not valid JSON: %w", err)
	}
	if conf.SubnetFile == "" {
		conf.SubnetFile = defaultSubnetFile
	}
	if conf.DataDir == "" {
		conf.DataDir = defaultDataDir
	}
	id := getenv("CNI_CONTAINERID")
	if id == "" || strings.ContainsAny(id, "/\\") {
		return fmt.Errorf("flannel: CNI_CONTAINERID %q is missing or not a plain name", id)
	}
	saved := filepath.Join(conf.DataDir, id)
	switch cmd {
	case "ADD":
		env, err := readSubnetEnv(conf.SubnetFile)
		if err != nil {
			return err
		}
		delegate, err := delegateConf(conf, env)
		if err != nil {
			return err
		}
		// Kept for DEL, which must work even after flanneld is gone.
		if err := os.MkdirAll(conf.DataDir, 0o700); err != nil {
			return fmt.Errorf("flannel: %w", err)
		}
		if err := os.WriteFile(saved, delegate, 0o600); err != nil {
			return fmt.Errorf("flannel: saving the delegate configuration: %w", err)
		}
		return delegateTo("bridge", getenv, delegate, stdout)
	case "DEL":
		delegate, err := os.ReadFile(saved)
		if errors.Is(err, os.ErrNotExist) {
			return nil // never added, or already deleted: DEL is idempotent
		}
		if err != nil {
			return fmt.Errorf("flannel: %w", err)
		}
		if err := delegateTo("bridge", getenv, delegate, stdout); err != nil {
			return err
		}
		return os.Remove(saved)
	case "CHECK":
		delegate, err := os.ReadFile(saved)
		if err != nil {
			return fmt.Errorf("flannel: CHECK of container %s: no saved configuration: %w", id, err)
		}
		return delegateTo("bridge", getenv, delegate, stdout)
	default:
		return fmt.Errorf("flannel: CNI_COMMAND %q: want ADD, DEL, CHECK or VERSION", cmd)
	}
}

// readSubnetEnv parses flanneld's KEY=VALUE file.
func readSubnetEnv(path string) (subnetEnv, error) {
	f, err := os.Open(path)
	if err != nil {
		return subnetEnv{}, fmt.Errorf("flannel: %w (is flanneld running on this node?)", err)
	}
	defer f.Close()
	var env subnetEnv
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch k {
		case "FLANNEL_NETWORK":
			env.Network = v
		case "FLANNEL_SUBNET":
			env.Subnet = v
		case "FLANNEL_MTU":
			if env.MTU, err = strconv.Atoi(v); err != nil {
				return env, fmt.Errorf("flannel: %s: FLANNEL_MTU=%q is not a number", path, v)
			}
		case "FLANNEL_IPMASQ":
			env.IPMasq = v == "true"
		}
	}
	if err := sc.Err(); err != nil {
		return env, fmt.Errorf("flannel: reading %s: %w", path, err)
	}
	if env.Network == "" || env.Subnet == "" {
		return env, fmt.Errorf("flannel: %s lacks FLANNEL_NETWORK or FLANNEL_SUBNET", path)
	}
	for k, v := range map[string]string{"FLANNEL_NETWORK": env.Network, "FLANNEL_SUBNET": env.Subnet} {
		if _, _, err := net.ParseCIDR(v); err != nil {
			return env, fmt.Errorf("flannel: %s: %s=%q is not a CIDR", path, k, v)
		}
	}
	return env, nil
}

// delegateConf renders the bridge configuration for this node's subnet,
// starting from the user's "delegate" overrides.
func delegateConf(conf netConf, env subnetEnv) ([]byte, error) {
	d := map[string]any{}
	for k, v := range conf.Delegate {
		d[k] = v
	}
	d["cniVersion"] = conf.CNIVersion
	d["name"] = conf.Name
	setDefault(d, "type", "bridge")
	setDefault(d, "bridge", "cni0")
	setDefault(d, "isGateway", true)
	setDefault(d, "hairpinMode", true)
	setDefault(d, "ipMasq", !env.IPMasq)
	if env.MTU > 0 {
		setDefault(d, "mtu", env.MTU)
	}
	if d["type"] != "bridge" {
		return nil, fmt.Errorf("flannel: delegate type %v: only bridge is supported", d["type"])
	}
	// IPAM is always host-local over this node's subnet; other keys of a
	// given "ipam" (e.g. dataDir) are kept.
	ipam := map[string]any{}
	if given, ok := d["ipam"].(map[string]any); ok {
		for k, v := range given {
			ipam[k] = v
		}
	}
	ipam["type"] = "host-local"
	// flanneld writes the bridge's address (10.244.3.1/24); host-local
	// wants the network (10.244.3.0/24) and gives .1 to the gateway.
	_, subnet, err := net.ParseCIDR(env.Subnet)
	if err != nil {
		return nil, fmt.Errorf("flannel: FLANNEL_SUBNET=%q is not a CIDR", env.Subnet)
	}
	ipam["ranges"] = [][]map[string]string{{{"subnet": subnet.String()}}}
	ipam["routes"] = []map[string]string{{"dst": env.Network}}
	d["ipam"] = ipam
	return json.Marshal(d)
}

func setDefault(m map[string]any, k string, v any) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// delegateTo runs plugin (found in CNI_PATH) with the same CNI environment
// and conf on stdin, copying its result to stdout.
func delegateTo(plugin string, getenv func(string) string, conf []byte, stdout io.Writer) error {
	var bin string
	for _, dir := range filepath.SplitList(getenv("CNI_PATH")) {
		p := filepath.Join(dir, plugin)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			bin = p
			break
		}
	}
	if bin == "" {
		return fmt.Errorf("flannel: delegate plugin %q not found in CNI_PATH %q", plugin, getenv("CNI_PATH"))
	}
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("flannel: delegate %s: %w: %s", plugin, err, strings.TrimSpace(out.String()))
	}
	_, err := stdout.Write(out.Bytes())
	return err
}
