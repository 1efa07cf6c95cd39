package tokenizer

import "sort"

// NFC normalisation (UAX #15) with CPython's unicodedata tables, as used by
// ftfy.fix_text's final unicodedata.normalize("NFC", text).

const (
	hangulSBase  = 0xac00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11a7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

var (
	nfcDecomp  map[rune][2]rune // second is 0 for singletons
	nfcCompose map[[2]rune]rune
)

func init() {
	nfcDecomp = make(map[rune][2]rune, len(tabDecomp)/4)
	nfcCompose = make(map[[2]rune]rune, len(tabDecomp)/4)
	for i := 0; i+3 < len(tabDecomp); i += 4 {
		cp, a, b, comp := rune(tabDecomp[i]), rune(tabDecomp[i+1]), rune(tabDecomp[i+2]), tabDecomp[i+3]
		nfcDecomp[cp] = [2]rune{a, b}
		if comp == 1 {
			nfcCompose[[2]rune{a, b}] = cp
		}
	}
}

// combiningClass returns the canonical combining class of r.
func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	c := uint32(r)
	n := len(tabCCC) / 3
	i := sort.Search(n, func(i int) bool { return tabCCC[3*i+1] >= c })
	if i < n && tabCCC[3*i] <= c {
		return uint8(tabCCC[3*i+2])
	}
	return 0
}

func decomposeRune(out []rune, r rune) []rune {
	if r < 0xc0 {
		return append(out, r)
	}
	if s := r - hangulSBase; s >= 0 && s < hangulSCount {
		l := hangulLBase + s/hangulNCount
		v := hangulVBase + (s%hangulNCount)/hangulTCount
		out = append(out, l, v)
		if t := hangulTBase + s%hangulTCount; t != hangulTBase {
			out = append(out, t)
		}
		return out
	}
	d, ok := nfcDecomp[r]
	if !ok {
		return append(out, r)
	}
	out = decomposeRune(out, d[0])
	if d[1] != 0 {
		out = decomposeRune(out, d[1])
	}
	return out
}

func composePair(a, b rune) (rune, bool) {
	// Hangul LV and LVT syllables.
	if l := a - hangulLBase; l >= 0 && l < hangulLCount {
		if v := b - hangulVBase; v >= 0 && v < hangulVCount {
			return hangulSBase + (l*hangulVCount+v)*hangulTCount, true
		}
	}
	if s := a - hangulSBase; s >= 0 && s < hangulSCount && s%hangulTCount == 0 {
		if t := b - hangulTBase; t > 0 && t < hangulTCount {
			return a + t, true
		}
	}
	c, ok := nfcCompose[[2]rune{a, b}]
	return c, ok
}

// nfc returns the NFC form of rs (a new slice; rs is not modified).
func nfc(rs []rune) []rune {
	// Below U+0300 there are no combining marks, singletons or Hangul, so
	// such text is already in NFC.
	needs := false
	for _, r := range rs {
		if r >= 0x300 {
			needs = true
			break
		}
	}
	if !needs {
		return rs
	}
	// Canonical decomposition.
	d := make([]rune, 0, len(rs)+8)
	for _, r := range rs {
		d = decomposeRune(d, r)
	}
	// Canonical ordering: stable sort of each run of non-starters by class.
	for i := 0; i < len(d); {
		if combiningClass(d[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(d) && combiningClass(d[j]) != 0 {
			j++
		}
		run := d[i:j]
		sort.SliceStable(run, func(a, b int) bool { return combiningClass(run[a]) < combiningClass(run[b]) })
		i = j
	}
	// Canonical composition.
	if len(d) == 0 {
		return d
	}
	starter := -1
	lastCC := int(combiningClass(d[0]))
	if lastCC == 0 {
		starter = 0
	}
	w := 1
	for i := 1; i < len(d); i++ {
		c := d[i]
		cc := int(combiningClass(c))
		if starter >= 0 {
			adjacent := w == starter+1
			if adjacent || (lastCC != 0 && lastCC < cc) {
				if comp, ok := composePair(d[starter], c); ok {
					d[starter] = comp
					continue
				}
			}
		}
		if cc == 0 {
			starter = w
		}
		lastCC = cc
		d[w] = c
		w++
	}
	return d[:w]
}
