package preflight

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/dhctl-dev/dhctl/internal/inventory"
)

// Minimums are the least a host of a role must have.
type Minimums struct {
	CPUs int
	// MemoryBytes is compared with MemTotal, which excludes what the kernel reserves at boot: a
	// machine sold as 4 GiB reports about 3.8 GiB, so memoryTolerance of the minimum is accepted.
	MemoryBytes uint64
	// DiskBytes is the free space required on /var/lib (containerd images, kubelet, etcd).
	DiskBytes uint64
}

// memoryTolerance is the share of the memory minimum that passes (see Minimums.MemoryBytes).
const memoryTolerance = 0.95

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
	tib = 1 << 40
)

// DefaultMinimums follow what Deckhouse asks of its nodes at the least: a master runs etcd and
// the control plane (2 CPUs, 4 GiB, 20 GiB for images and etcd), a worker only kubelet,
// containerd and the workloads' images (1 CPU, 2 GiB, 10 GiB).
func DefaultMinimums(r inventory.Role) Minimums {
	if r == inventory.Worker {
		return Minimums{CPUs: 1, MemoryBytes: 2 * gib, DiskBytes: 10 * gib}
	}
	return Minimums{CPUs: 2, MemoryBytes: 4 * gib, DiskBytes: 20 * gib}
}

// String renders minimums the way ParseMinimums reads them.
func (m Minimums) String() string {
	return fmt.Sprintf("cpu=%d,memory=%s,disk=%s", m.CPUs, FormatBytes(m.MemoryBytes), FormatBytes(m.DiskBytes))
}

// ParseMinimums overrides base with "cpu", "memory" and "disk" entries (as a --flag k=v,k=v
// gives them): cpu is a count, memory and disk a size such as 4Gi, 512Mi or 20G.
func ParseMinimums(base Minimums, kv map[string]string) (Minimums, error) {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := kv[k]
		switch k {
		case "cpu":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return base, fmt.Errorf("cpu=%q: want a whole number of CPUs, e.g. cpu=2", v)
			}
			base.CPUs = n
		case "memory", "disk":
			b, err := ParseBytes(v)
			if err != nil {
				return base, fmt.Errorf("%s=%q: %v", k, v, err)
			}
			if k == "memory" {
				base.MemoryBytes = b
			} else {
				base.DiskBytes = b
			}
		default:
			return base, fmt.Errorf("%q: unknown minimum; valid keys: cpu, memory, disk (e.g. cpu=2,memory=4Gi,disk=20Gi)", k)
		}
	}
	return base, nil
}

// ParseBytes reads a size: a number with an optional suffix Ki, Mi, Gi, Ti (powers of 1024) or
// K, M, G, T (powers of 1000); no suffix means bytes.
func ParseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Ki", kib}, {"Mi", mib}, {"Gi", gib}, {"Ti", tib},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	mult := 1.0
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("want a size such as 4Gi, 512Mi or 20G")
	}
	v := f * mult
	if v > math.MaxUint64/2 {
		return 0, fmt.Errorf("size too large")
	}
	return uint64(v), nil
}

// FormatBytes renders a size with a binary suffix, one decimal when needed.
func FormatBytes(b uint64) string {
	switch {
	case b >= tib:
		return trimZero(float64(b)/tib) + "Ti"
	case b >= gib:
		return trimZero(float64(b)/gib) + "Gi"
	case b >= mib:
		return trimZero(float64(b)/mib) + "Mi"
	case b >= kib:
		return trimZero(float64(b)/kib) + "Ki"
	}
	return strconv.FormatUint(b, 10)
}

func trimZero(f float64) string {
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}
