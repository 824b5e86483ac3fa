package rig

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// egressTable is the nftables table of the rig's namespace that counts what machines send
// beyond the rig.
const egressTable = "dhctl_rig_egress"

// Egress counts (and drops) every packet a machine sends to an address outside the rig's
// network: anything but the other machines, the registry and the operator's side, which all
// live in the rig's prefix. What a machine sends beyond it would, on a real network, leave for
// the internet; here it is stopped where it enters the rig's namespace.
type Egress struct {
	rig *Rig
}

// CountEgress installs the counters (nftables, in the rig's namespace, at prerouting on the
// bridge: packets from pods are counted too, whatever their source address).
func (r *Rig) CountEgress(ctx context.Context) (*Egress, error) {
	rules := fmt.Sprintf(`table inet %[1]s {
	set ipv4 { type ipv4_addr; flags dynamic; size 4096; }
	set ipv6 { type ipv6_addr; flags dynamic; size 4096; }
	chain prerouting {
		type filter hook prerouting priority -300; policy accept;
		iifname "%[2]s" meta nfproto ipv4 ip daddr != %[3]s update @ipv4 { ip daddr } counter name beyond4 drop
		iifname "%[2]s" meta nfproto ipv6 update @ipv6 { ip6 daddr } counter name beyond6 drop
	}
	counter beyond4 { }
	counter beyond6 { }
}
`, egressTable, bridgeName, r.prefix.Masked())
	// A re-install starts from zero.
	_ = runStdin(ctx, "delete table inet "+egressTable+"\n", "nsenter", "--net="+r.NetNS(), "nft", "-f", "-")
	if err := runStdin(ctx, rules, "nsenter", "--net="+r.NetNS(), "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("rig: egress counters: %w", err)
	}
	return &Egress{rig: r}, nil
}

// Packets returns how many packets machines sent beyond the rig so far, and the addresses
// they were sent to.
func (e *Egress) Packets(ctx context.Context) (int64, []string, error) {
	out, err := output(ctx, nil, "nsenter", "--net="+e.rig.NetNS(), "nft", "-j", "list", "table", "inet", egressTable)
	if err != nil {
		return 0, nil, fmt.Errorf("rig: reading the egress counters: %w", err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, nil, fmt.Errorf("rig: egress counters: %w", err)
	}
	var packets int64
	var addrs []string
	for _, o := range doc.Nftables {
		if raw, ok := o["counter"]; ok {
			var c struct {
				Packets int64 `json:"packets"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return 0, nil, err
			}
			packets += c.Packets
		}
		if raw, ok := o["set"]; ok {
			var s struct {
				Elem []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				return 0, nil, err
			}
			for _, el := range s.Elem {
				addrs = append(addrs, strings.Trim(string(el), `"`))
			}
		}
	}
	sort.Strings(addrs)
	return packets, addrs, nil
}

func runStdin(ctx context.Context, stdin, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(string(out), 15))
	}
	return nil
}

// registryTable counts what the registry sends.
const registryTable = "dhctl_rig_registry"

// RegistryTraffic counts the bytes the rig's registry sends (every answer to every client in the
// rig's namespace): an account of what a pull fetched that does not rely on the client's word.
type RegistryTraffic struct {
	rig *Rig
}

// CountSent starts counting from zero.
func (reg *Registry) CountSent(ctx context.Context) (*RegistryTraffic, error) {
	r := reg.rig
	rules := fmt.Sprintf(`table inet %[1]s {
	counter sent { }
	chain output {
		type filter hook output priority 0; policy accept;
		tcp sport %[2]d counter name sent
	}
}
`, registryTable, registryPort)
	_ = runStdin(ctx, "delete table inet "+registryTable+"\n", "nsenter", "--net="+r.NetNS(), "nft", "-f", "-")
	if err := runStdin(ctx, rules, "nsenter", "--net="+r.NetNS(), "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("rig: registry traffic counter: %w", err)
	}
	return &RegistryTraffic{rig: r}, nil
}

// Bytes is what the registry sent since CountSent (IP packets, headers included).
func (c *RegistryTraffic) Bytes(ctx context.Context) (int64, error) {
	out, err := output(ctx, nil, "nsenter", "--net="+c.rig.NetNS(), "nft", "-j", "list", "counter", "inet", registryTable, "sent")
	if err != nil {
		return 0, fmt.Errorf("rig: reading the registry traffic counter: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Bytes int64 `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return 0, fmt.Errorf("rig: registry traffic counter: %w", err)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Bytes, nil
		}
	}
	return 0, fmt.Errorf("rig: no registry traffic counter in %s", out)
}
