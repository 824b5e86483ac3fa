package config

import (
	"fmt"
	"sort"
	"strings"
)

// levenshtein is the edit distance between a and b (insertions, deletions, substitutions),
// compared case-insensitively because case slips are the most common typo in field names.
func levenshtein(a, b string) int {
	ra, rb := []rune(strings.ToLower(a)), []rune(strings.ToLower(b))
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// closest returns the candidate nearest to s, if it is near enough to be a likely typo: at most
// a third of the longer word's length, and at most 3 edits.
func closest(s string, candidates []string) (string, bool) {
	if len(s) > 200 {
		return "", false // nobody mistypes a 200-character field name; keep the cost bounded
	}
	best, bestD := "", -1
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		d := levenshtein(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 {
		return "", false
	}
	limit := max(len(s), len(best)) / 3
	limit = min(max(limit, 1), 3)
	return best, bestD <= limit
}

// didYouMean is a hint naming the closest candidate, or listing all of them when none is close.
func didYouMean(s string, candidates []string) string {
	if c, ok := closest(s, candidates); ok {
		return fmt.Sprintf("did you mean %q?", c)
	}
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	if len(sorted) == 0 {
		return "remove it"
	}
	return "remove it or use one of: " + strings.Join(sorted, ", ")
}

// kindSuggestion is the known kind a document's unknown kind is likely a slip of: a typo, or,
// for the configuration kinds (those ending in Config or Configuration, which hold settings
// that would be lost if the document were taken for a resource), Config written for
// Configuration or the other way round (InitConfig, SSHConfiguration), the kind cut short
// (StaticCluster) or with something before it (DhctlInitConfiguration). Kinds that merely start
// with another kind's name (Deckhouse's NodeGroupConfiguration) are not slips.
func kindSuggestion(kind string, known []string) (string, bool) {
	if c, ok := closest(kind, known); ok {
		return c, true
	}
	if len(kind) > 200 {
		return "", false
	}
	lower := strings.ToLower(kind)
	var found []string
	for _, k := range known {
		base, isConfig := configKindBase(k)
		if !isConfig {
			continue
		}
		lk := strings.ToLower(k)
		typedBase, typedIsConfig := configKindBase(kind)
		switch {
		case typedIsConfig && typedBase == base:
		case len(kind) >= 6 && 2*len(kind) >= len(k) && strings.HasPrefix(lk, lower):
		case k != KindClusterConfiguration && strings.HasSuffix(lower, lk):
		default:
			continue
		}
		found = append(found, k)
	}
	if len(found) == 1 {
		return found[0], true
	}
	return "", false
}

// configKindBase is a kind without its Config or Configuration ending, lower case, and whether
// it has one.
func configKindBase(kind string) (string, bool) {
	l := strings.ToLower(kind)
	for _, suffix := range []string{"configuration", "config"} {
		if b, ok := strings.CutSuffix(l, suffix); ok && b != "" {
			return b, true
		}
	}
	return "", false
}
