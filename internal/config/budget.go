package config

import "fmt"

// Limits of one Load call. They are per run, not per file or document, so that many inputs each
// just under a limit cannot add up: together they keep any input of up to maxFileSize within
// about 2 s and 256 MiB (docs/benchmarks.md has the measured figures).
const (
	// maxRunValues bounds the YAML values of one run, in all files, aliases expanded. yaml.v3
	// keeps ~170 bytes per node, and a document is parsed whole before it can be looked at,
	// so this is also what a file may hold by yamlNodeBound before it is parsed at all.
	// Real configurations hold a few hundred values; this admits ~3 MiB of typical YAML.
	maxRunValues = 500_000
	// maxDepth bounds how deeply values nest. Documents nest a few levels, Kubernetes objects
	// (a CRD's schema) a few dozen; the bound keeps every recursive walk shallow.
	maxDepth = 256
	// maxProblems bounds how many problems a run reports: finding and locating one costs a walk
	// of its document, and nobody reads the thousandth.
	maxProblems = 100
	// maxKDFRounds bounds the bcrypt rounds spent checking SSH key passphrases in one run: four
	// keys at ssh-keygen's default of 16, ~0.5 s.
	maxKDFRounds = 64
)

// limits are the limits of one Load call; defaultLimits gives those of the constants. Tests may
// load with smaller ones (LoadOptions.limits) to keep the cost of each input small.
type limits struct {
	values       int // YAML values, aliases expanded
	rendered     int // bytes the templates render to
	templateWork int // bytes template functions take and make
	actionBytes  int // bytes of {{ }} actions of the templates
	kdfRounds    int // bcrypt rounds for checking passphrases
}

func defaultLimits() limits {
	return limits{values: maxRunValues, rendered: maxRenderedSize, templateWork: maxTemplateWork, actionBytes: maxActionBytes, kdfRounds: maxKDFRounds}
}

// budget is what is left of the limits of one Load call (the embedded limits), and the limits
// themselves, for messages.
type budget struct {
	max limits
	limits
}

func newBudget(max limits) *budget { return &budget{max: max, limits: max} }

// sizeText renders a number of bytes for a message: 8 MiB, 256 KiB, 100 bytes.
func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// yamlNodeBound is an upper bound on the nodes yaml.v3 builds from data (aliases not expanded),
// found in one pass without parsing, so that a dense file is refused before yaml.v3 spends
// ~250 bytes on each of its nodes. Every node is a scalar, a collection, an alias, an empty
// value or a document, and each is tied to an indicator yaml.v3 cannot do without:
//
//	:  ?     a block mapping's start, the key before it, the value after it (3)
//	-        (followed by a blank) a block sequence's start and its entry (3)
//	[  {     the collection and its first entry (2)
//	,        the entry after it and an empty value before it (2)
//	]  }  *  an empty value before it, an alias (1)
//	--- ...  at the start of a line: a document and its content (2, besides the dashes)
//	line break, and the start of the stream: a scalar (1, 3)
//
// Text in comments, quotes and block scalars is counted too: the bound is about twice the real
// count for typical YAML. FuzzYAMLNodeBound checks it against yaml.v3.
func yamlNodeBound(data []byte) int {
	n := 3
	lineStart := true
	for i := 0; i < len(data); i++ {
		b := data[i]
		next := byte(0)
		if i+1 < len(data) {
			next = data[i+1]
		}
		atLineStart := lineStart
		lineStart = false
		switch b {
		case ':', '?':
			n += 3
		case '-':
			if isBlankZ(next) {
				n += 3
			}
			if atLineStart && i+2 < len(data) && data[i+1] == '-' && data[i+2] == '-' {
				n += 2
			}
		case '.':
			if atLineStart && i+2 < len(data) && data[i+1] == '.' && data[i+2] == '.' {
				n += 2
			}
		case '[', '{', ',':
			n += 2
		case ']', '}', '*':
			n++
		case '\n':
			n++
			lineStart = true
		case '\r':
			if next != '\n' {
				n++
				lineStart = true
			}
		case 0x85, 0xA8, 0xA9:
			// The last byte of NEL, LS and PS, which yaml.v3 takes as line breaks too (and of
			// other characters, which only makes the bound looser).
			n++
			lineStart = true
		}
	}
	return n
}

// isBlankZ is yaml.v3's is_blankz for the byte after an indicator: blank, line break or end.
func isBlankZ(b byte) bool {
	return b == ' ' || b == '\t' || b == '\r' || b == '\n' || b == 0 || b == 0xC2 || b == 0xE2
}
