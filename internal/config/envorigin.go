package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Templates may read any environment variable, and a value from the environment is never printed
// in a problem (it may be a secret), wherever it lands and whatever is wrong with it: the problem
// names the variable instead. Two layers see to it. fileEnv knows which YAML nodes of a file hold
// text from the environment: their values are treated like those of secret fields. scrubEnvValues
// then replaces any value read that still shows up in a problem's text.

// yamlPos is a position as yaml.v3 gives it: 1-based line and column, columns in characters.
type yamlPos struct{ line, col int }

func (a yamlPos) less(b yamlPos) bool { return a.line < b.line || a.line == b.line && a.col < b.col }

// fileEnv is where the values from the environment are in one file's rendered text.
type fileEnv struct {
	spans []posSpan
	// starts are the positions of every node of the file's documents, sorted: a node's text runs
	// from its start to the next node's, so a value with any part from the environment (part of
	// "prefix-{{ env "X" }}") is found.
	starts []yamlPos
}

type posSpan struct {
	start, end yamlPos
	names      []string
}

// newFileEnv places the spans of use in the rendered text; nil when nothing came from the
// environment.
func newFileEnv(rendered []byte, use *envUse) *fileEnv {
	if use == nil || len(use.spans) == 0 {
		return nil
	}
	offsets := make([]int, 0, 2*len(use.spans))
	for _, s := range use.spans {
		offsets = append(offsets, s.start, s.end)
	}
	pos := yamlPositions(rendered, offsets)
	e := &fileEnv{}
	for i, s := range use.spans {
		e.spans = append(e.spans, posSpan{start: pos[2*i], end: pos[2*i+1], names: s.names})
	}
	return e
}

// yamlPositions gives yaml.v3's position of each of the ascending byte offsets of data, counting
// line breaks as yaml.v3 does (\n, \r\n, \r, NEL, LS, PS).
func yamlPositions(data []byte, offsets []int) []yamlPos {
	out := make([]yamlPos, len(offsets))
	line, col, k := 1, 1, 0
	for i := 0; k < len(offsets); {
		for k < len(offsets) && offsets[k] <= i {
			out[k] = yamlPos{line, col}
			k++
		}
		if i >= len(data) {
			for ; k < len(offsets); k++ {
				out[k] = yamlPos{line, col}
			}
			break
		}
		r, size := utf8.DecodeRune(data[i:])
		switch r {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				size = 2
			}
			line, col = line+1, 1
		case '\n', 0x85, 0x2028, 0x2029:
			line, col = line+1, 1
		default:
			col++
		}
		i += size
	}
	return out
}

// addNodes notes the positions of a document's nodes; documents are added in order.
func (e *fileEnv) addNodes(root *yaml.Node) {
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Line > 0 {
			e.starts = append(e.starts, yamlPos{n.Line, n.Column})
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	sort.Slice(e.starts, func(i, j int) bool { return e.starts[i].less(e.starts[j]) })
}

// namesOf names the variables the text of n came from; nil when none, and for a nil fileEnv.
func (e *fileEnv) namesOf(n *yaml.Node) []string {
	if e == nil || n == nil {
		return nil
	}
	var names []string
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		names = e.namesOf(n.Alias)
	}
	if n.Line == 0 {
		return names
	}
	a := yamlPos{n.Line, n.Column}
	i := sort.Search(len(e.starts), func(i int) bool { return a.less(e.starts[i]) })
	b := yamlPos{line: 1 << 62}
	if i < len(e.starts) {
		b = e.starts[i]
	}
	for _, s := range e.spans {
		if a.less(s.end) && s.start.less(b) {
			names = append(names, s.names...)
		}
	}
	return uniqueSorted(names)
}

func uniqueSorted(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	k := 1
	for i := 1; i < len(names); i++ {
		if names[i] != names[k-1] {
			names[k] = names[i]
			k++
		}
	}
	return names[:k]
}

// envVars renders names for a message: "environment variable X", "environment variables X, Y".
func envVars(names []string) string {
	if len(names) == 1 {
		return "environment variable " + names[0]
	}
	return "environment variables " + strings.Join(names, ", ")
}

// fromEnv names the variables the value at path of d came from; nil when none.
func (d *loadedDoc) fromEnv(path []string) []string {
	if d.env == nil {
		return nil
	}
	_, val := locate(d.root, path)
	if val == nil || !pathExists(d.root, path) {
		return nil
	}
	return d.env.namesOf(val)
}

// keyFromEnv says whether the key that ends path came from the environment.
func (d *loadedDoc) keyFromEnv(path []string) bool {
	if d.env == nil || len(path) == 0 {
		return false
	}
	keys := keyNodes(d.root, path)
	return d.env.namesOf(keys[len(keys)-1]) != nil
}

// show quotes text, the value at path of d, for a message, or names the variables it came from.
func (d *loadedDoc) show(path []string, text string) string {
	if names := d.fromEnv(path); names != nil {
		return "the value of " + envVars(names)
	}
	return strconv.Quote(shortText(text))
}

// pathExists says whether path leads to a node of root, not only to a parent of it.
func pathExists(root *yaml.Node, path []string) bool {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, seg := range path {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n = childNode(n, seg); n == nil {
			return false
		}
	}
	return true
}

// keyNodes are the key nodes of path's segments in root (nil for list indexes and keys that are
// not there).
func keyNodes(root *yaml.Node, path []string) []*yaml.Node {
	keys := make([]*yaml.Node, len(path))
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i, seg := range path {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil {
			break
		}
		next := (*yaml.Node)(nil)
		switch n.Kind {
		case yaml.MappingNode:
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == seg {
					keys[i], next = n.Content[j], n.Content[j+1]
					break
				}
			}
		case yaml.SequenceNode:
			next = childNode(n, seg)
		}
		n = next
	}
	return keys
}

// scrubEnvValues replaces every value read from the environment (of 4 bytes or more: shorter
// ones are in too many words) that shows up in a problem, as written, quoted, or shortened, by
// the name of its variable. It catches what the messages built from fileEnv cannot know: a value
// in an error of the template itself, a kind, a message of the schema library.
func scrubEnvValues(ps Problems, values map[string]string) {
	type form struct{ text, name string }
	var forms []form
	for name, v := range values {
		if len(v) < 4 {
			continue
		}
		q := strconv.Quote(v)
		for _, f := range []string{q, strconv.Quote(shortText(v)), v, q[1 : len(q)-1], shortText(v), strings.TrimSuffix(shortText(v), "...")} {
			if len(f) >= 4 {
				forms = append(forms, form{f, name})
			}
		}
	}
	if len(forms) == 0 {
		return
	}
	// Longest first, so that a quoted form goes with its quotes.
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i].text) > len(forms[j].text) })
	scrub := func(s string) string {
		for _, f := range forms {
			if strings.Contains(s, f.text) {
				s = strings.ReplaceAll(s, f.text, fmt.Sprintf("(the value of environment variable %s)", f.name))
			}
		}
		return s
	}
	for i := range ps {
		p := &ps[i]
		p.Message, p.Hint, p.Path, p.Kind = scrub(p.Message), scrub(p.Hint), scrub(p.Path), scrub(p.Kind)
	}
}
