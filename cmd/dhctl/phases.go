package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dhctl-dev/dhctl/internal/phase"
	"github.com/dhctl-dev/dhctl/internal/session"
)

// addPhaseFlags adds the phase runner's flags to a command that runs phases; --skip-phase and
// --only-phase complete to the names of phases (the command's part of the tree).
func addPhaseFlags(cmd *cobra.Command, o *session.PhaseOptions, phases []phase.Phase) {
	f := cmd.Flags()
	f.StringArrayVar(&o.Skip, "skip-phase", nil, "skip this phase (name or path such as install/cni; repeatable)")
	f.StringArrayVar(&o.Only, "only-phase", nil, "run only this phase (repeatable); finished phases named here run again")
	f.BoolVar(&o.DryRun, "dry-run", false, "show what each phase would do without changing anything")
	complete := func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		infos, err := phase.List(phases)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		out := make([]cobra.Completion, 0, len(infos))
		for _, in := range infos {
			out = append(out, cobra.CompletionWithDesc(in.Name, in.Title))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	for _, name := range []string{"skip-phase", "only-phase"} {
		if err := cmd.RegisterFlagCompletionFunc(name, complete); err != nil {
			panic(err) // a programming error: the flag was just added
		}
	}
}

// phaseList is the help's listing of a phase tree (of the subtrees rooted at the named phases
// when roots is set): one line per phase, indented by depth, with its title.
func phaseList(tree []phase.Phase, roots []string) string {
	infos, err := phase.List(subtree(tree, roots))
	if err != nil {
		return "  (phase tree: " + err.Error() + ")"
	}
	var b strings.Builder
	for _, in := range infos {
		fmt.Fprintf(&b, "  %-28s %s\n", strings.Repeat("  ", in.Depth)+in.Path, in.Title)
	}
	return strings.TrimRight(b.String(), "\n")
}

// subtree keeps the phases named in roots (all when roots is empty) with their subtrees, and
// the groups on the way to them holding only those: each keeps its path, and so its checkpoints,
// whichever command runs it.
func subtree(tree []phase.Phase, roots []string) []phase.Phase {
	if len(roots) == 0 {
		return tree
	}
	var out []phase.Phase
	for _, p := range tree {
		if slices.Contains(roots, p.Name()) {
			out = append(out, p)
			continue
		}
		if g, ok := p.(phase.Group); ok {
			if kept := subtree(g.Phases(), roots); len(kept) > 0 {
				out = append(out, &prunedGroup{Group: g, children: kept})
			}
		}
	}
	return out
}

// prunedGroup is a group with some of its children.
type prunedGroup struct {
	phase.Group
	children []phase.Phase
}

func (g *prunedGroup) Phases() []phase.Phase { return g.children }

// Concurrent: as the group it prunes.
func (g *prunedGroup) Concurrent() bool {
	c, ok := g.Group.(phase.Concurrent)
	return ok && c.Concurrent()
}

func names(infos []phase.Info) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Name
	}
	return out
}
