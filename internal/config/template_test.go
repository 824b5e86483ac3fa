package config

import (
	"strings"
	"testing"
	"text/template/parse"
)

// TestTemplateFunctions: every function templates have still works as documented in
// docs/configuration.md, within the limits.
func TestTemplateFunctions(t *testing.T) {
	env := envMap(map[string]string{"A": "a", "EMPTY": "", "MULTI": "x\ny\"z"})
	for _, tc := range []struct{ tpl, want string }{
		{`{{ env "A" }}`, "a"},
		{`{{ envOr "NOPE" "dflt" }} {{ envOr "A" "dflt" }}`, "dflt a"},
		{`{{ env "MULTI" | quote }} {{ quote "q" }}`, `"x\ny\"z" "q"`},
		{`{{ printf "%s/%s:%d" (env "A") "b" 5 }}`, "a/b:5"},
		{`{{ printf "%-4s|%5.2f|%q" "x" 3.14159 "y" }}`, `x   | 3.14|"y"`},
		{`{{ printf "100%%" }}`, "100%"},
		{`{{ print "a" "b" 1 2 true }}`, "ab1 2 true"},
		{`{{ if eq (env "A") "x" "a" }}yes{{ else }}no{{ end }}`, "yes"},
		{`{{ if ne (env "A") "a" }}yes{{ else if eq 1 1 }}one{{ end }}`, "one"},
		{`{{ if and (env "A") (not (env "EMPTY")) }}t{{ end }}{{ if or (env "EMPTY") "" }}f{{ end }}`, "t"},
		{`{{ $v := env "A" }}{{ $v = printf "%s%s" $v $v }}{{ $v }}`, "aa"},
		{`{{/* a comment */}}x`, "x"},
	} {
		b := newBudget(defaultLimits())
		out, _, p := renderTemplate("t.yml", []byte(tc.tpl), env, b)
		if p != nil {
			t.Errorf("%s: %v", tc.tpl, p)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("%s = %q, want %q", tc.tpl, out, tc.want)
		}
	}
	for _, tc := range []struct{ tpl, want string }{
		{`{{ eq "a" 1 }}`, "incompatible types for comparison"},
		{`{{ call "x" }}`, `template uses "call"`},
		{`{{ index "x" 0 }}`, `template uses "index"`},
		{`{{ range "x" }}{{ end }}`, `template uses "range"`},
		{`{{ printf "%s" (slice "abc" 1) }}`, `template uses "slice"`},
		{`{{ printf "%[1]*d" 5 1 }}`, "printf widths and precisions must be written in the format"},
		{`{{ printf "%.1000f" 1.0 }}`, "printf width or precision 1000 is larger than 100"},
	} {
		_, _, p := renderTemplate("t.yml", []byte(tc.tpl), env, newBudget(defaultLimits()))
		if p == nil || !strings.Contains(p.Error(), tc.want) {
			t.Errorf("%s: got %v, want a problem with %q", tc.tpl, p, tc.want)
		}
	}
}

// TestTemplateBudgetIsPerRun: what template functions make, and what templates render to, is
// limited per Load, not per file: three files each within a per-file limit are refused together.
func TestTemplateBudgetIsPerRun(t *testing.T) {
	// 10 doublings from 1 KiB: 1 MiB of value, ~4 MiB of function work.
	grow := "{{ $a := \"" + strings.Repeat("x", 1024) + "\" }}" + strings.Repeat("{{ $a = printf \"%s%s\" $a $a }}", 10) + "\n"
	var paths []string
	for _, name := range []string{"a.yml", "b.yml", "c.yml"} {
		paths = append(paths, writeFile(t, name, grow))
	}
	_, ps := loadProblems(t, LoadOptions{ConfigPaths: append([]string{writeFile(t, "cc.yml", validCC)}, paths...)})
	if !strings.Contains(ps.Error(), "the template functions of one run may take and make at most 8 MiB") ||
		strings.Contains(ps.Error(), "a.yml") {
		t.Errorf("want the work limit hit by b.yml or c.yml, not a.yml:\n%v", ps)
	}

	// Three files of 6 MiB text with one action each render to more than 16 MiB.
	big := "# " + strings.Repeat("x", 6<<20) + "\n{{ \"\" }}\n"
	_, ps = loadProblems(t, LoadOptions{ConfigPaths: []string{writeFile(t, "cc.yml", validCC), writeFile(t, "a.yml", big), writeFile(t, "b.yml", big), writeFile(t, "c.yml", big)}})
	if got := ps.Error(); !strings.HasSuffix(got, "c.yml: the templates of one run render to more than 16 MiB; check the template for a value printed over and over") || strings.Contains(got, "a.yml") || strings.Contains(got, "b.yml") {
		t.Errorf("want the render limit hit by c.yml only:\n%.300s", got)
	}
}

// FuzzActionBytes: actionBytes must not count fewer action bytes than text/template parses, or a
// file of dense actions could get past the limit: every parse node but the text nodes (at most
// one more than the actions) stands for at least half a byte of action text.
func FuzzActionBytes(f *testing.F) {
	for _, s := range []string{"{{1}}", "a{{ \"}}\" }}b", "{{ `}}` }}", "{{ '}' }}", "{{/* }} */}}x", "{{- 1 -}}", "{{ if 1 }}{{ 2 }}{{ else }}{{ 3 }}{{ end }}",
		"{{ (1) | printf \"%d\" }}", "{{ $x := 1 }}{{ $x }}", "{{ \"\\\"}}\" }}", "{{ .A.B }}", "{{ 1 2 3 4 5 }}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 4096 {
			return
		}
		tr := parse.New("x")
		tr.Mode = parse.SkipFuncCheck | parse.ParseComments
		if _, err := tr.Parse(src, "", "", map[string]*parse.Tree{}); err != nil {
			return
		}
		nodes, texts := countTemplateNodes(tr.Root)
		if a := actionBytes([]byte(src)); nodes-texts > 2*a+2 {
			t.Fatalf("%q: %d parse nodes besides %d text nodes, but actionBytes = %d", src, nodes-texts, texts, a)
		}
	})
}

func countTemplateNodes(n parse.Node) (nodes, texts int) {
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if n == nil {
			return
		}
		nodes++
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.TextNode:
			texts++
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, d := range n.Decl {
				walk(d)
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		}
	}
	walk(n)
	return nodes, texts
}
