package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// nodeError is a structural problem found while turning YAML nodes into values.
type nodeError struct {
	node *yaml.Node
	path []string
	msg  string
	hint string
}

func (e *nodeError) Error() string { return e.msg }

// valueConverter turns a yaml.v3 node tree into JSON-compatible values (map[string]any, []any,
// string, int64, float64, bool, nil), which is what the schema validator and encoding/json expect.
// Every value, aliases expanded and mapping keys included, is charged to the run's budget, so
// that an "alias bomb" (a few lines that expand to billions of values), or many documents each
// under any per-document limit, is an error, not an OOM.
type valueConverter struct {
	budget *budget
	// path is the field path of the node being converted. It is one stack, pushed and popped,
	// and copied only into an error: copying it at every level costs O(depth²).
	path []string
	// via is the outermost alias being expanded, where an expansion that runs out of budget is
	// reported: the anchor's own line says nothing about where it was used.
	via *yaml.Node
}

func newValueConverter(b *budget) *valueConverter { return &valueConverter{budget: b} }

// errorPath is a copy of the current path for an error, which outlives the stack.
func (c *valueConverter) errorPath(seg ...string) []string {
	return append(append(make([]string, 0, len(c.path)+len(seg)), c.path...), seg...)
}

func (c *valueConverter) charge(n *yaml.Node) error {
	c.budget.values--
	if c.budget.values < 0 {
		if c.via != nil {
			n = c.via
		}
		return &nodeError{node: n, msg: fmt.Sprintf("the documents expand to more than %d values, the limit of one run (all files, YAML aliases expanded)", c.budget.max.values),
			hint: "write anchors and aliases out; is this the right file?"}
	}
	return nil
}

func (c *valueConverter) convert(n *yaml.Node) (any, error) {
	if err := c.charge(n); err != nil {
		return nil, err
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.convert(n.Content[0])
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &nodeError{node: n, path: c.errorPath(), msg: "alias to an unknown anchor"}
		}
		if c.via != nil {
			return c.convert(n.Alias)
		}
		c.via = n
		v, err := c.convert(n.Alias)
		c.via = nil
		return v, err
	case yaml.MappingNode, yaml.SequenceNode:
		if len(c.path) >= maxDepth {
			return nil, &nodeError{node: n, msg: fmt.Sprintf("values nest more than %d levels deep", maxDepth), hint: "is this the right file? documents nest a few levels"}
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if err := c.charge(k); err != nil {
				return nil, err
			}
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return nil, &nodeError{node: k, path: c.errorPath(), msg: "a mapping key must be a plain string", hint: "write the key as text"}
			}
			if k.ShortTag() == "!!merge" {
				return nil, &nodeError{node: k, path: c.errorPath(), msg: "YAML merge keys (<<) are not supported", hint: "write the merged fields out"}
			}
			key := k.Value
			if _, dup := m[key]; dup {
				return nil, &nodeError{node: k, path: c.errorPath(key), msg: "duplicate field", hint: "keep one of the two"}
			}
			c.path = append(c.path, key)
			val, err := c.convert(v)
			c.path = c.path[:len(c.path)-1]
			if err != nil {
				return nil, err
			}
			m[key] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			c.path = append(c.path, strconv.Itoa(i))
			val, err := c.convert(item)
			c.path = c.path[:len(c.path)-1]
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		return s, nil
	case yaml.ScalarNode:
		v, err := scalarValue(n)
		if err != nil {
			err.path = c.errorPath()
			return nil, err
		}
		return v, nil
	}
	return nil, &nodeError{node: n, path: c.errorPath(), msg: "unsupported YAML node"}
}

func scalarValue(n *yaml.Node) (any, *nodeError) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, &nodeError{node: n, msg: "not a valid boolean", hint: "write true or false"}
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return float64(u), nil
		}
		return nil, &nodeError{node: n, msg: "integer out of range"}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, &nodeError{node: n, msg: "not a valid number"}
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &nodeError{node: n, msg: "NaN and infinite numbers are not allowed", hint: "write a finite number or quote the text"}
		}
		return f, nil
	case "!!str", "!!timestamp", "!!binary":
		// Timestamps and binary stay the text the user wrote: no field here wants a time value.
		return n.Value, nil
	}
	return nil, &nodeError{node: n, msg: fmt.Sprintf("unsupported YAML tag %s", n.Tag), hint: "remove the tag"}
}

// locate finds the YAML nodes of a field path in a document: the key node (nil for the root or a
// sequence item) and the value node. When the path goes beyond what the document has (a missing
// or defaulted field), it returns the nodes of the deepest existing parent, so that a problem can
// still point at a line.
func locate(root *yaml.Node, path []string) (key, val *yaml.Node) {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	val = n
	for depth, seg := range path {
		if n == nil || depth > 1000 {
			return key, val
		}
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					key, val = n.Content[i], n.Content[i+1]
					n, found = val, true
					break
				}
			}
			if !found {
				return key, val
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return key, val
			}
			key, val = nil, n.Content[i]
			n = val
		default:
			return key, val
		}
	}
	return key, val
}

// formatPath renders a field path for humans: spec.nodeTemplate.labels["node-role.kubernetes.io/x"],
// sshAgentPrivateKeys[0].key. Segments that index a list are shown as [i]: a list in value, or,
// where value has nothing (nil, or the path goes beyond it), in the YAML under root.
// A segment whose hide is true is a key that came from the environment, and is not shown.
func formatPath(value any, root *yaml.Node, path []string, hide ...bool) string {
	var b strings.Builder
	cur := value
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i, seg := range path {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		isList := false
		switch v := cur.(type) {
		case []any:
			isList = true
			if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(v) {
				cur = v[i]
			} else {
				cur = nil
			}
		case map[string]any:
			cur = v[seg]
		default:
			isList = cur == nil && n != nil && n.Kind == yaml.SequenceNode
			cur = nil
		}
		n = childNode(n, seg)
		switch {
		case isList:
			b.WriteString("[" + seg + "]")
		case i < len(hide) && hide[i]:
			b.WriteString("[<a key from the environment>]")
		case isPlainFieldName(seg) && len(seg) <= 60:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg)
		default:
			b.WriteString("[" + strconv.Quote(shortText(seg)) + "]")
		}
	}
	return b.String()
}

// childNode is the value node of seg in a mapping or sequence node, or nil.
func childNode(n *yaml.Node, seg string) *yaml.Node {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

func isPlainFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// child is path+seg in a fresh slice, so sibling paths never share a backing array.
func child(path []string, seg string) []string {
	out := make([]string, len(path)+1)
	copy(out, path)
	out[len(path)] = seg
	return out
}
