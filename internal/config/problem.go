package config

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Problem is one thing wrong with the configuration: where it is (file, document, field, line)
// and what to do about it. Messages never contain secret values.
type Problem struct {
	File     string // path as given on the command line; empty for problems of the whole set
	Document int    // 1-based index of the document within File; 0 when not about one document
	Kind     string // kind of the document, when known
	Path     string // field path inside the document, e.g. spec.nodeType or podSubnetCIDR
	Line     int    // 1-based line in the (template-rendered) file; 0 when unknown
	Column   int    // 1-based column; 0 when unknown
	Message  string // what is wrong
	Hint     string // how to fix it
}

// Error renders the problem on one line:
//
//	config.yml: document 2 (ClusterConfiguration), line 7: podSubnetCIDR: <message>; <hint>
func (p Problem) Error() string {
	var where []string
	if p.File != "" {
		where = append(where, p.File)
	}
	var loc []string
	if p.Document > 0 {
		d := fmt.Sprintf("document %d", p.Document)
		if p.Kind != "" {
			d += " (" + p.Kind + ")"
		}
		loc = append(loc, d)
	} else if p.Kind != "" {
		loc = append(loc, p.Kind)
	}
	if p.Line > 0 {
		loc = append(loc, fmt.Sprintf("line %d", p.Line))
	}
	if len(loc) > 0 {
		where = append(where, strings.Join(loc, ", "))
	}
	if p.Path != "" {
		where = append(where, p.Path)
	}
	msg := p.Message
	if p.Hint != "" {
		msg += "; " + p.Hint
	}
	if len(where) == 0 {
		return msg
	}
	return strings.Join(where, ": ") + ": " + msg
}

// Problems is every problem found in one Load; Load returns it as its error so that a user sees
// all of them in one run.
type Problems []Problem

// Error renders one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems the way a reader walks the input: by file (in the order the files
// were given), document, line, then path. Problems about the whole set come last.
func sortProblems(ps Problems, fileOrder map[string]int) {
	rank := func(p Problem) int {
		if p.File == "" {
			return len(fileOrder) + 1
		}
		if r, ok := fileOrder[p.File]; ok {
			return r
		}
		return len(fileOrder)
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		if a.Document != b.Document {
			return a.Document < b.Document
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
}

// shortText shortens user text for a message, at a character boundary, so that a pasted blob (or
// a hostile 8 MiB key) leaves the message readable.
func shortText(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
