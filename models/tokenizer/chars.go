package tokenizer

import (
	"sort"
	"unicode/utf8"
)

// This file holds the character-level primitives that stand in for CPython's
// str methods and the regex module's classes. All data comes from
// tables_gen.go, so the behaviour follows the Python environment the tables
// were generated from (see tests/tokenizer/make_tables.py), not Go's own
// unicode package (whose Unicode version differs).

// inRanges reports whether r lies in one of the inclusive [lo, hi] pairs of
// tab (sorted, non-overlapping).
func inRanges(tab []uint32, r rune) bool {
	if r < 0 {
		return false
	}
	c := uint32(r)
	n := len(tab) / 2
	// First pair whose hi >= c.
	i := sort.Search(n, func(i int) bool { return tab[2*i+1] >= c })
	return i < n && tab[2*i] <= c
}

// runeSet is a membership test over ranges with a precomputed Latin-1 part.
type runeSet struct {
	latin [256]bool
	tab   []uint32
}

func newRuneSet(tab []uint32) *runeSet {
	s := &runeSet{tab: tab}
	for r := rune(0); r < 256; r++ {
		s.latin[r] = inRanges(tab, r)
	}
	return s
}

func (s *runeSet) has(r rune) bool {
	if r >= 0 && r < 256 {
		return s.latin[r]
	}
	return inRanges(s.tab, r)
}

var (
	setPySpace       = newRuneSet(tabPySpace)
	setCaseIgnorable = newRuneSet(tabPyCaseIgnorable)
	setCased         = newRuneSet(tabPyCased)
	setReWord        = newRuneSet(tabReWord)
	setReDigit       = newRuneSet(tabReDigit)
	setRegexLetter   = newRuneSet(tabRegexLetter)
	setRegexNumber   = newRuneSet(tabRegexNumber)
	setRegexSpace    = newRuneSet(tabRegexSpace)
	setRegexOther    = newRuneSet(tabRegexOther)
	setFtfyControl   = newRuneSet(tabControlChars)

	// latinLower caches lowerRuneSlow for U+0000..U+00FF.
	latinLower [256]rune
)

func init() {
	for r := rune(0); r < 256; r++ {
		latinLower[r] = lowerRuneSlow(r)
	}
}

// lowerRuneSlow applies the one-rune part of str.lower (tabPyLower runs).
func lowerRuneSlow(r rune) rune {
	tab := tabPyLower
	n := len(tab) / 4
	i := sort.Search(n, func(i int) bool { return tab[4*i+1] >= r })
	if i < n && tab[4*i] <= r && (r-tab[4*i])%tab[4*i+2] == 0 {
		return r + tab[4*i+3]
	}
	return r
}

func lowerRune(r rune) rune {
	if r >= 0 && r < 256 {
		return latinLower[r]
	}
	return lowerRuneSlow(r)
}

// pyLower is Python's str.lower: full lowercase mappings (U+0130 becomes two
// runes) and the Final_Sigma rule for U+03A3.
func pyLower(rs []rune) []rune {
	out := make([]rune, 0, len(rs))
	for i, r := range rs {
		switch {
		case r < 0x80:
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			out = append(out, r)
		case r == 0x3a3:
			out = append(out, sigmaLower(rs, i))
		default:
			if m, ok := tabPyLowerMulti[r]; ok {
				out = append(out, []rune(m)...)
			} else {
				out = append(out, lowerRune(r))
			}
		}
	}
	return out
}

// sigmaLower mirrors CPython's handle_capital_sigma.
func sigmaLower(rs []rune, i int) rune {
	j := i - 1
	for j >= 0 && setCaseIgnorable.has(rs[j]) {
		j--
	}
	final := j >= 0 && setCased.has(rs[j])
	if final && i+1 < len(rs) {
		j = i + 1
		for j < len(rs) && setCaseIgnorable.has(rs[j]) {
			j++
		}
		final = j == len(rs) || !setCased.has(rs[j])
	}
	if final {
		return 0x3c2
	}
	return 0x3c3
}

// pyStrip is str.strip() with no arguments.
func pyStrip(rs []rune) []rune {
	i, j := 0, len(rs)
	for i < j && setPySpace.has(rs[i]) {
		i++
	}
	for j > i && setPySpace.has(rs[j-1]) {
		j--
	}
	return rs[i:j]
}

// pyJoinSplit is " ".join(s.split()): runs of whitespace become one space and
// leading/trailing whitespace disappears.
func pyJoinSplit(rs []rune) []rune {
	out := make([]rune, 0, len(rs))
	pending := false
	for _, r := range rs {
		if setPySpace.has(r) {
			pending = len(out) > 0
			continue
		}
		if pending {
			out = append(out, ' ')
			pending = false
		}
		out = append(out, r)
	}
	return out
}

// firstInvalidUTF8 returns the byte offset of the first invalid UTF-8
// sequence in s, or -1.
func firstInvalidUTF8(s string) int {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

func runesEqual(a, b []rune) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsRune(rs []rune, r rune) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func isASCIIRunes(rs []rune) bool {
	for _, r := range rs {
		if r >= 0x80 {
			return false
		}
	}
	return true
}
