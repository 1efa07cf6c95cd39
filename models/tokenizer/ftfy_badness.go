package tokenizer

// Port of ftfy.badness.is_bad: BADNESS_RE.search(text) is not None.
// The character categories come from tables_gen.go (MOJIBAKE_CATEGORIES);
// the alternatives below follow the regex in ftfy/badness.py one by one.

const (
	catCommon uint16 = 1 << iota
	catC1
	catBad
	catLaw
	catCurrency
	catStartPunct
	catEndPunct
	catNumeric
	catKaomoji
	catUpperAccented
	catLowerAccented
	catUpperCommon
	catLowerCommon
	catBox
)

var mojibakeCats map[rune]uint16

func init() {
	names := map[string]uint16{
		"common":            catCommon,
		"c1":                catC1,
		"bad":               catBad,
		"law":               catLaw,
		"currency":          catCurrency,
		"start_punctuation": catStartPunct,
		"end_punctuation":   catEndPunct,
		"numeric":           catNumeric,
		"kaomoji":           catKaomoji,
		"upper_accented":    catUpperAccented,
		"lower_accented":    catLowerAccented,
		"upper_common":      catUpperCommon,
		"lower_common":      catLowerCommon,
		"box":               catBox,
	}
	if len(names) != len(tabMojibake) {
		panic("tokenizer: MOJIBAKE_CATEGORIES changed; update ftfy_badness.go")
	}
	mojibakeCats = make(map[rune]uint16)
	for name, tab := range tabMojibake {
		bit, ok := names[name]
		if !ok {
			panic("tokenizer: unknown MOJIBAKE_CATEGORIES entry " + name)
		}
		for i := 0; i+1 < len(tab); i += 2 {
			for c := tab[i]; c <= tab[i+1]; c++ {
				mojibakeCats[rune(c)] |= bit
			}
		}
	}
	badnessAlts = buildBadness()
}

// bElem matches one character: by category bits, by explicit runes, or by a
// predicate.
type bElem struct {
	cats uint16
	lits string
	fn   func(rune) bool
}

func (e bElem) match(r rune) bool {
	if e.cats != 0 && mojibakeCats[r]&e.cats != 0 {
		return true
	}
	for _, l := range e.lits {
		if l == r {
			return true
		}
	}
	return e.fn != nil && e.fn(r)
}

type badnessAlt struct {
	anchored bool // '^': only at the start of the text
	elems    []bElem
}

var badnessAlts []badnessAlt

func cats(c uint16) bElem               { return bElem{cats: c} }
func lits(s string) bElem               { return bElem{lits: s} }
func catsLits(c uint16, s string) bElem { return bElem{cats: c, lits: s} }
func pred(f func(rune) bool) bElem      { return bElem{fn: f} }

func isLatinLetter(r rune) bool { return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') }
func isLowerLatin(r rune) bool  { return r >= 'a' && r <= 'z' }

func buildBadness() []badnessAlt {
	const (
		c1    = catC1
		bad   = catBad
		la    = catLowerAccented
		ua    = catUpperAccented
		box   = catBox
		sp    = catStartPunct
		ep    = catEndPunct
		cur   = catCurrency
		num   = catNumeric
		law   = catLaw
		lc    = catLowerCommon
		uc    = catUpperCommon
		kao   = catKaomoji
		com   = catCommon
		space = ' '
	)
	seq := func(e ...bElem) badnessAlt { return badnessAlt{elems: e} }
	letter := pred(isLatinLetter)
	lower := pred(isLowerLatin)
	ws := pred(setPySpace.has)
	word := pred(setReWord.has)
	arabic := catsLits(com|cur|bad|num|sp, "\u0178\u0160\u00ae\u00b0\u00b5\u00bb")
	return []badnessAlt{
		seq(cats(c1)),
		seq(cats(bad|la|ua|box|sp|ep|cur|num|law), cats(bad)),
		seq(letter, cats(lc|uc), cats(bad)),
		seq(cats(bad), cats(la|ua|box|sp|ep|cur|num|law)),
		seq(cats(la|lc|box|ep|cur|num), cats(ua)),
		seq(cats(box|ep|cur|num), cats(la)),
		seq(cats(la|box|ep), cats(cur)),
		seq(ws, cats(ua), cats(cur)),
		seq(cats(ua|box), cats(num|law)),
		seq(cats(la|ua|box|cur|ep), cats(sp), cats(num)),
		seq(cats(la|ua|cur|num|box|law), cats(ep), cats(sp)),
		seq(cats(cur|num|box), cats(sp)),
		seq(lower, cats(ua), cats(sp|cur)),
		seq(cats(box), cats(kao)),
		seq(cats(la|ua|cur|num|sp|ep|law), cats(box)),
		seq(cats(box), cats(ep)),
		seq(cats(la|ua), cats(sp|ep), word),
		// The ligature œ when not followed by an unaccented Latin letter.
		seq(lits("\u0152\u0153"), pred(func(r rune) bool { return !isLatinLetter(r) })),
		// Degree signs after capital letters.
		seq(cats(ua), lits("\u00b0")),
		// Common Windows-1252 2-character mojibake.
		seq(lits("\u00c2\u00c3\u00ce\u00d0"),
			catsLits(sp|ep, "\u20ac\u0153\u0160\u0161\u00a2\u00a3\u0178\u017e\u00a0\u00ad\u00ae\u00a9\u00b0\u00b7\u00bb\u2013\u2014\u00b4")),
		seq(lits("\u00d7"), lits("\u00b2\u00b3")),
		// Windows-1252 mojibake of Arabic words.
		seq(lits("\u00d8\u00d9"), arabic, lits("\u00d8\u00d9"), arabic),
		// South Asian alphabets.
		seq(lits("\u00e0"), lits("\u00b2\u00b5\u00b9\u00bc\u00bd\u00be")),
		// MacRoman mojibake.
		seq(lits("\u221a"), lits("\u00b1\u2202\u2020\u2260\u00ae\u2122\u00b4\u2264\u2265\u00a5\u00b5\u00f8")),
		seq(lits("\u2248"), lits("\u00b0\u00a2")),
		seq(lits("\u201a"), lits("\u00c4"), lits("\u00ec\u00ee\u00ef\u00f2\u00f4\u00fa\u00f9\u00fb\u2020\u00b0\u00a2\u03c0")),
		seq(lits("\u201a"), lits("\u00e2\u00f3"), lits("\u00e0\u00e4\u00b0\u00ea")),
		// Windows-1251 mojibake of characters in the U+2000 range.
		seq(lits("\u0432"), lits("\u0402")),
		// Windows-1251 mojibake of Latin-1 / Cyrillic.
		seq(lits("\u0412\u0413\u0420\u0421"), catsLits(c1|bad|sp|ep|cur, "\u00b0\u00b5"), lits("\u0412\u0413\u0420\u0421")),
		seq(lits("\u0413"), lits("\u045e"), lits("\u0412"), lits("\u0402"), lits("\u0412"),
			pred(func(r rune) bool { return r != '\n' }),
			pred(func(r rune) bool { return isLatinLetter(r) || r == space })),
		// Windows-1252 encodings of 'à' and 'á', and of \xa0 itself.
		seq(lits("\u00c3"), lits("\u00a0\u00a1")),
		seq(lower, lits("\u00c3\u00c2"), lits(" ")),
		seq(lower, ws, lits("\u00c3\u00c2"), lits(" ")),
		{anchored: true, elems: []bElem{lits("\u00c3\u00c2"), lits(" ")}},
		// Â as an encoding of exactly the same character.
		seq(catsLits(ep, "abcdefghijklmnopqrstuvwxyz.,?!"), lits("\u00c2"), catsLits(sp|ep, " ")),
		// Windows-1253 mojibake of characters in the U+2000 range.
		seq(lits("\u03b2"), lits("\u20ac"), lits("\u2122\u00a0\u0386\u00ad\u00ae\u00b0")),
		// Windows-1253 mojibake of Latin-1 / Greek.
		seq(lits("\u0392\u0393\u039e\u039f"), catsLits(c1|bad|sp|ep|cur, "\u00b0"), lits("\u0392\u0393\u039e\u039f")),
		// Windows-1257 mojibake of characters in the U+2000 range.
		seq(lits("\u0101"), lits("\u20ac")),
	}
}

// isBad is ftfy.badness.is_bad.
func isBad(rs []rune) bool {
	for i := range rs {
		for _, alt := range badnessAlts {
			if alt.anchored && i != 0 {
				continue
			}
			if i+len(alt.elems) > len(rs) {
				continue
			}
			ok := true
			for k, e := range alt.elems {
				if !e.match(rs[i+k]) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}
