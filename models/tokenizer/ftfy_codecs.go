package tokenizer

import "unicode/utf8"

// The single-byte codecs ftfy tries (CHARMAP_ENCODINGS, including its
// "sloppy" Windows code pages), its utf-8-variants decoder, and the byte-level
// fixers restore_byte_a0 and replace_lossy_sequences.

type charmap struct {
	name   string
	decode [256]int32 // -1: byte undefined
	encode map[rune]byte
	sloppy bool
}

var (
	charmapOrder    []*charmap // ftfy's CHARMAP_ENCODINGS order
	charmapLatin1   *charmap
	charmapSloppy   *charmap // sloppy-windows-1252 (fix_c1_controls)
	charmapWin1252  *charmap // strict windows-1252
	charmapMacRoman *charmap
)

func newCharmap(name string) *charmap {
	tab, ok := tabCharmaps[name]
	if !ok {
		panic("tokenizer: missing charmap " + name)
	}
	cm := &charmap{name: name, decode: tab, encode: make(map[rune]byte, 256)}
	cm.sloppy = len(name) > 7 && name[:7] == "sloppy-"
	for b := 255; b >= 0; b-- {
		if tab[b] >= 0 {
			cm.encode[rune(tab[b])] = byte(b)
		}
	}
	return cm
}

func init() {
	for _, name := range tabCharmapNames {
		cm := newCharmap(name)
		charmapOrder = append(charmapOrder, cm)
		switch name {
		case "latin-1":
			charmapLatin1 = cm
		case "sloppy-windows-1252":
			charmapSloppy = cm
		case "macroman":
			charmapMacRoman = cm
		}
	}
	charmapWin1252 = newCharmap("windows-1252")
	if charmapLatin1 == nil || charmapSloppy == nil || charmapMacRoman == nil {
		panic("tokenizer: incomplete charmap tables")
	}
}

// possible is chardata.possible_encoding: every rune of rs is encodable.
func (cm *charmap) possible(rs []rune) bool {
	for _, r := range rs {
		if _, ok := cm.encode[r]; !ok {
			return false
		}
	}
	return true
}

func (cm *charmap) encodeRunes(rs []rune) []byte {
	out := make([]byte, len(rs))
	for i, r := range rs {
		out[i] = cm.encode[r]
	}
	return out
}

// decodeStrict decodes b; ok is false if some byte is undefined.
func (cm *charmap) decodeStrict(b []byte) ([]rune, bool) {
	out := make([]rune, len(b))
	for i, c := range b {
		r := cm.decode[c]
		if r < 0 {
			return nil, false
		}
		out[i] = rune(r)
	}
	return out, true
}

// decodeUTF8Strict is bytes.decode("utf-8") with errors="strict".
func decodeUTF8Strict(b []byte) ([]rune, bool) {
	if !utf8.Valid(b) {
		return nil, false
	}
	return []rune(string(b)), true
}

// decodeUTF8Variants is ftfy's "utf-8-variants" codec (final=True): UTF-8
// plus CESU-8 surrogate pairs and Java's C0 80 for U+0000. It reproduces the
// codec's regex-driven behaviour, including `$` matching before a final
// newline.
func decodeUTF8Variants(b []byte) ([]rune, bool) {
	out := make([]rune, 0, len(b))
	n := len(b)
	for i := 0; i < n; {
		c := b[i]
		switch {
		case c < utf8.RuneSelf:
			out = append(out, rune(c))
			i++
		case c == 0xc0:
			// NULL_EXPR: C0 (80|$). With more input the codec returns U+0000
			// for two bytes whatever the second byte is, which can only be
			// 0x80 or a final newline for the regex to have matched.
			rest := n - i
			if rest > 1 && (b[i+1] == 0x80 || (rest == 2 && b[i+1] == '\n')) {
				out = append(out, 0)
				i += 2
				continue
			}
			return nil, false
		case c == 0xed && i+1 < n && b[i+1] >= 0xa0:
			// Surrogate territory: only a full CESU-8 pair decodes.
			rest := n - i
			if rest < 6 {
				return nil, false
			}
			b1, b2, b3, b4, b5 := b[i+1], b[i+2], b[i+3], b[i+4], b[i+5]
			if b1 <= 0xaf && b2 >= 0x80 && b2 <= 0xbf && b3 == 0xed && b4 >= 0xb0 && b4 <= 0xbf &&
				((b5 >= 0x80 && b5 <= 0xbf) || (rest == 6 && b5 == '\n')) {
				cp := (rune(b1&0x0f) << 16) + (rune(b2&0x3f) << 10) + (rune(b4&0x0f) << 6) + rune(b5&0x3f) + 0x10000
				out = append(out, cp)
				i += 6
				continue
			}
			return nil, false
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			out = append(out, r)
			i += size
		}
	}
	return out, true
}

// byteClass is a set of bytes.
type byteClass [256]bool

func bclass(spec ...byte) *byteClass {
	// spec is a list of inclusive (lo, hi) pairs.
	var c byteClass
	for i := 0; i+1 < len(spec); i += 2 {
		for b := int(spec[i]); b <= int(spec[i+1]); b++ {
			c[b] = true
		}
	}
	return &c
}

func bone(bs ...byte) *byteClass {
	var c byteClass
	for _, b := range bs {
		c[b] = true
	}
	return &c
}

func bunion(cs ...*byteClass) *byteClass {
	var c byteClass
	for _, x := range cs {
		for i := range x {
			c[i] = c[i] || x[i]
		}
	}
	return &c
}

// bytePattern is a fixed-length sequence of byte classes.
type bytePattern []*byteClass

func (p bytePattern) matchAt(b []byte, i int) bool {
	if i+len(p) > len(b) {
		return false
	}
	for k, c := range p {
		if !c[b[i+k]] {
			return false
		}
	}
	return true
}

// firstMatch returns the length of the first alternative matching at i, or 0.
func firstMatch(alts []bytePattern, b []byte, i int) int {
	for _, p := range alts {
		if p.matchAt(b, i) {
			return len(p)
		}
	}
	return 0
}

var (
	bSpace   = bone(' ')
	bCont    = bclass(0x80, 0xbf)
	bNotA0   = bclass(0x80, 0x84, 0x86, 0x9f, 0xa1, 0xbf)
	bSub     = bone(0x1a)
	bSubQ    = bone(0x1a, '?')
	bSubCont = bunion(bone(0x1a), bclass(0x80, 0xbf))
	bSubQC   = bunion(bone(0x1a, '?'), bclass(0x80, 0xbf))
	bED      = bone(0xed)

	// chardata.ALTERED_UTF8_RE
	alteredUTF8 = []bytePattern{
		{bone(0xc2, 0xc3, 0xc5, 0xce, 0xd0, 0xd9), bSpace},
		{bone(0xe2, 0xe3), bSpace, bNotA0},
		{bclass(0xe0, 0xe3), bNotA0, bSpace},
		{bone(0xf0), bSpace, bCont, bCont},
		{bone(0xf0), bCont, bSpace, bCont},
		{bone(0xf0), bCont, bCont, bSpace},
	}

	// chardata.LOSSY_UTF8_RE
	lossyUTF8 = []bytePattern{
		{bclass(0xc2, 0xdf), bSub},
		{bclass(0xc2, 0xc3), bone('?')},
		{bED, bclass(0xa0, 0xaf), bSubQ, bED, bclass(0xb0, 0xbf), bSubQC},
		{bED, bclass(0xa0, 0xaf), bSubQC, bED, bclass(0xb0, 0xbf), bSubQ},
		{bclass(0xe0, 0xef), bSubQ, bSubCont},
		{bclass(0xe0, 0xef), bSubCont, bSubQ},
		{bclass(0xf0, 0xf4), bSubQ, bSubCont, bSubCont},
		{bclass(0xf0, 0xf4), bSubCont, bSubQ, bSubCont},
		{bclass(0xf0, 0xf4), bSubCont, bSubCont, bSubQ},
		{bSub},
	}
)

func searchAlts(alts []bytePattern, b []byte) bool {
	for i := range b {
		if firstMatch(alts, b, i) > 0 {
			return true
		}
	}
	return false
}

// restoreByteA0 is ftfy.fixes.restore_byte_a0.
func restoreByteA0(b []byte) []byte {
	// A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
	tmp := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		if b[i] == 0xc3 && i+1 < len(b) && b[i+1] == ' ' && !aGraveException(b[i+2:]) {
			tmp = append(tmp, 0xc3, 0xa0, ' ')
			i += 2
			continue
		}
		tmp = append(tmp, b[i])
		i++
	}
	// ALTERED_UTF8_RE matches get their spaces turned into 0xA0.
	out := make([]byte, 0, len(tmp))
	for i := 0; i < len(tmp); {
		if m := firstMatch(alteredUTF8, tmp, i); m > 0 {
			for _, c := range tmp[i : i+m] {
				if c == ' ' {
					c = 0xa0
				}
				out = append(out, c)
			}
			i += m
			continue
		}
		out = append(out, tmp[i])
		i++
	}
	return out
}

func aGraveException(rest []byte) bool {
	for _, w := range []string{" ", "quele", "quela", "quilo", "s "} {
		if len(rest) >= len(w) && string(rest[:len(w)]) == w {
			return true
		}
	}
	return false
}

// replaceLossySequences is ftfy.fixes.replace_lossy_sequences.
func replaceLossySequences(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if m := firstMatch(lossyUTF8, b, i); m > 0 {
			out = append(out, 0xef, 0xbf, 0xbd)
			i += m
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}
