package config

import (
	"bytes"
	"testing"

	"gopkg.in/yaml.v3"
)

// yamlNodes counts the nodes yaml.v3 builds from data, in the documents it decodes before an
// error, aliases not expanded.
func yamlNodes(data []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	total := 0
	var count func(n *yaml.Node)
	count = func(n *yaml.Node) {
		total++
		for _, c := range n.Content {
			count(c)
		}
	}
	for {
		var n yaml.Node
		// At an error (or the end) stop: a failed document's nodes, built before the error,
		// are at most those of its valid prefix, which the bound covers too.
		if err := decodeSafely(dec, &n); err != nil {
			return total
		}
		count(&n)
	}
}

// FuzzYAMLNodeBound: yamlNodeBound must never count fewer nodes than yaml.v3 builds, or a dense
// file could get past the check and be parsed.
func FuzzYAMLNodeBound(f *testing.F) {
	for _, s := range []string{
		"a: 1\n", "- a\n- b\n", "[a, b, {c: d}]\n", "{a, b, c}\n", "? a\n? b\n", "---\n---\n", "a\n...\nb\n...\n",
		"- - - a\n", "a: &x [1, 2]\nb: *x\n", ":\n:\n", "[:, :]\n", "{: , :}\n", "- !!null\n- !!str\n", "a:\r\nb:\r\n",
		"\"a\":b\n", "{\"a\":1,\"b\":2}\n", "[a: b, c: d]\n", "--- a\n--- b\n", "!t x\n", "a: |\n  x\n", "? - a\n  - b\n: c\n",
		validCC, validInit + "---\n" + validNG,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		if got, bound := yamlNodes(data), yamlNodeBound(data); got > bound {
			t.Fatalf("yaml.v3 builds %d nodes, yamlNodeBound says at most %d, from %q", got, bound, data)
		}
	})
}
