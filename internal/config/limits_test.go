package config

import (
	"fmt"
	"math/rand"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// hostileShapes are the worst inputs of up to maxFileSize found so far: the first ones are refused
// before they are parsed, the last ones are just within the limits and loaded in full.
var hostileShapes = []struct {
	name string
	data func() string
	want string // in the problems; "" = loads
}{
	{"dense flow sequence", func() string { return "[" + strings.Repeat("x,", maxFileSize/2-2) + "x]\n" }, "holds too much YAML"},
	{"dense block sequence", func() string { return strings.Repeat("- x\n", maxFileSize/4) }, "holds too much YAML"},
	{"many empty documents", func() string { return strings.Repeat("---\n", maxFileSize/4) }, "holds too much YAML"},
	{"many small documents", func() string { return strings.Repeat("---\na: 1\n", maxFileSize/9) }, "holds too much YAML"},
	{"deep nesting, 20 documents", func() string {
		return strings.Repeat(strings.Repeat("{a: ", 9999)+"1"+strings.Repeat("}", 9999)+"\n---\n", 20)
	}, "holds too much YAML"},
	{"deep nesting, one document", func() string {
		return validCC + "---\napiVersion: v1\nkind: ConfigMap\ndata: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n"
	}, "nest more than 256 levels"},
	{"aliases in many documents", func() string {
		return strings.Repeat("---\napiVersion: v1\nkind: ConfigMap\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d]\n", 1000)
	}, "expand to more than 500000 values"},
	{"one 51 KB document nested 9999 deep", func() string {
		return strings.Repeat("{a: ", 9999) + "1" + strings.Repeat("}", 9999) + "\n"
	}, "nest more than 256 levels"},
	{"template printf width", func() string { return validCC + "clusterDomain: {{ printf \"%999999999d\" 1 }}\n" }, "printf width or precision 999999999"},
	{"template doubling to the work limit", func() string {
		return validCC + "{{ $a := \"" + strings.Repeat("x", 1024) + "\" }}" + strings.Repeat("{{ $a = printf \"%s%s\" $a $a }}", 14) + "\n"
	}, "may take and make at most 8 MiB"},
	{"template printed to the render limit", func() string {
		return validCC + "{{ $a := \"" + strings.Repeat("x", 1024) + "\" }}" + strings.Repeat("{{ $a = print $a $a }}", 9) + "# " + strings.Repeat("{{ $a }}", 40) + "\n"
	}, "render to more than 16 MiB"},
	{"template actions, just within the limit", func() string {
		return validCC + "# " + strings.Repeat("{{ 1 }}", 37_000) + "\n"
	}, ""},
	{"many node groups, valid, just within the limit", func() string {
		var b strings.Builder
		b.WriteString(validCC)
		for i := 0; i < 14_000; i++ {
			fmt.Fprintf(&b, "---\napiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata: {name: w%d}\nspec: {nodeType: Static}\n", i)
		}
		return b.String()
	}, ""},
	{"flow mapping of empty values, just within the limit", func() string {
		return validCC + "---\napiVersion: v1\nkind: ConfigMap\ndata: {" + strings.Repeat("a,", 249_000) + "a}\n"
	}, "duplicate field"},
	{"invalid labels, just within the limit", func() string {
		var b strings.Builder
		b.WriteString(validCC + "---\napiVersion: deckhouse.io/v1\nkind: NodeGroup\nmetadata: {name: w}\nspec:\n  nodeType: Static\n  nodeTemplate:\n    labels:\n")
		for i := 0; i < 120_000; i++ {
			fmt.Fprintf(&b, "      -k%d: v\n", i)
		}
		return b.String()
	}, "stopped after 100 problems"},
	{"unknown fields, just within the limit", func() string {
		var b strings.Builder
		b.WriteString(validCC)
		for i := 0; i < 120_000; i++ {
			fmt.Fprintf(&b, "podSubnetCIRD%d: 1\n", i)
		}
		return b.String()
	}, "stopped after 100 problems"},
}

// TestHostileInputsBounded: each shape is refused or loaded with a bounded allocation (the
// allocation, not time: timings belong in benchmarks). Before the limits were per run and the
// dense files refused before parsing, these allocated 0.5-48 GB.
func TestHostileInputsBounded(t *testing.T) {
	const limit = 256 << 20
	reg, vm := testRegistry(t)
	for _, sh := range hostileShapes {
		t.Run(sh.name, func(t *testing.T) {
			p := writeFile(t, "config.yml", sh.data())
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{p}, Schemas: reg, VersionMap: vm})
			runtime.ReadMemStats(&after)
			if sh.want == "" && ps != nil {
				t.Errorf("want it loaded, got:\n%.2000s", ps.Error())
			}
			if !strings.Contains(ps.Error(), sh.want) {
				t.Errorf("problems lack %q:\n%.2000s", sh.want, ps.Error())
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
				t.Errorf("Load allocated %d MiB, want at most %d MiB", alloc>>20, limit>>20)
			}
		})
	}
}

// TestConvertDoesNotCopyThePathPerLevel: converting a document nested d levels deep must not
// copy its field path at every level, which costs O(d²) (850 MB for one 51 KB document nested
// 9999 deep, before nesting was limited).
func TestConvertDoesNotCopyThePathPerLevel(t *testing.T) {
	const depth = maxDepth - 1
	var root yaml.Node
	src := strings.Repeat("- ", depth) + "x\n"
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	convert := func() {
		if _, err := newValueConverter(newBudget(defaultLimits())).convert(&root); err != nil {
			t.Fatal(err)
		}
	}
	convert()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	convert()
	runtime.ReadMemStats(&after)
	// Each level is a one-item []any (~40 bytes) and its index; a copied path would add
	// depth²/2 strings of 16 bytes, ~500 KB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
		t.Errorf("converting %d levels allocated %d KiB, want at most 64 KiB", depth, alloc>>10)
	}
}

func TestTooManyProblems(t *testing.T) {
	cfg := validCC + strings.Repeat("---\napiVersion: deckhouse.io/v1\nkind: InitConfigurtion\n", 150)
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: []string{writeFile(t, "c.yml", cfg)}})
	if len(ps) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(ps), maxProblems+1)
	}
	if last := ps[len(ps)-1].Error(); last != "stopped after 100 problems; fix these and run again" {
		t.Errorf("last problem = %s", last)
	}
	if first := ps[0]; first.Document != 2 {
		t.Errorf("first problem is not about document 2: %s", first.Error())
	}
}

// TestOverlappingPairs checks the sweep against comparing every pair.
func TestOverlappingPairs(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var nets []*namedCIDR
		for i := 0; i < 1+rnd.Intn(12); i++ {
			if rnd.Intn(8) == 0 {
				nets = append(nets, nil)
				continue
			}
			addr := netip.AddrFrom4([4]byte{10, byte(rnd.Intn(4)), byte(rnd.Intn(4)), 0})
			p := netip.PrefixFrom(addr, 14+rnd.Intn(11)).Masked()
			nets = append(nets, &namedCIDR{prefix: p, text: fmt.Sprint(i)})
		}
		var want, got []string
		for i := range nets {
			for j := 0; j < i; j++ {
				if nets[i] != nil && nets[j] != nil && nets[i].prefix.Overlaps(nets[j].prefix) {
					want = append(want, nets[j].text+"<"+nets[i].text)
				}
			}
		}
		overlappingPairs(nets, func(a, b *namedCIDR) bool {
			got = append(got, a.text+"<"+b.text)
			return true
		})
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: pairs %v, want %v", round, got, want)
		}
	}
}

func testRegistry(t testing.TB) (*Registry, *VersionMap) {
	t.Helper()
	reg, err := NewRegistry(candiFS())
	if err != nil {
		t.Fatal(err)
	}
	vm, err := LoadVersionMap(candiFS())
	if err != nil {
		t.Fatal(err)
	}
	return reg, vm
}
