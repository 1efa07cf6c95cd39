package tokenizer

// Pre-tokenisation (open_clip's regex), the byte-to-unicode mapping, BPE
// merging and byte-level decoding.

// byteEncoder is open_clip's bytes_to_unicode(): printable Latin-1 bytes map
// to themselves, the rest to U+0100 onwards in byte order. byteOrder lists
// the bytes in the dict's insertion order, which is the vocabulary order.
var (
	byteEncoder [256]rune
	byteDecoder map[rune]byte
	byteOrder   [256]byte
)

func init() {
	n := 0
	used := [256]bool{}
	add := func(lo, hi int) {
		for b := lo; b <= hi; b++ {
			byteEncoder[b] = rune(b)
			byteOrder[n] = byte(b)
			used[b] = true
			n++
		}
	}
	add('!', '~')
	add(0xa1, 0xac)
	add(0xae, 0xff)
	extra := 0
	for b := 0; b < 256; b++ {
		if !used[b] {
			byteEncoder[b] = rune(256 + extra)
			byteOrder[n] = byte(b)
			extra++
			n++
		}
	}
	byteDecoder = make(map[rune]byte, 256)
	for b := 0; b < 256; b++ {
		byteDecoder[byteEncoder[b]] = byte(b)
	}
}

// Piece classes of the pre-tokenisation pattern
// `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
// (regex module, IGNORECASE).
const (
	clsNone   = iota // matched by no alternative (skipped like whitespace)
	clsLetter        // [\p{L}]
	clsNumber        // [\p{N}]
	clsSpace         // \s
	clsOther         // [^\s\p{L}\p{N}]
)

var asciiClass [128]uint8

func init() {
	for r := rune(0); r < 128; r++ {
		asciiClass[r] = classifySlow(r)
	}
}

func classifySlow(r rune) uint8 {
	switch {
	case setRegexLetter.has(r):
		return clsLetter
	case setRegexNumber.has(r):
		return clsNumber
	case setRegexSpace.has(r):
		return clsSpace
	case setRegexOther.has(r):
		return clsOther
	}
	return clsNone
}

func classify(r rune) uint8 {
	if r >= 0 && r < 128 {
		return asciiClass[r]
	}
	return classifySlow(r)
}

// foldEq reports whether text rune r matches pattern letter p under the regex
// module's IGNORECASE (simple case folding). Only the letters that occur in
// the literal alternatives matter; among them only 's' has a non-ASCII
// equivalent (U+017F LATIN SMALL LETTER LONG S).
func foldEq(r, p rune) bool {
	if r == p {
		return true
	}
	if p >= 'a' && p <= 'z' {
		if r == p-'a'+'A' {
			return true
		}
		if p == 's' && r == 0x17f {
			return true
		}
	}
	return false
}

func matchLiteral(rs []rune, i int, lit string) int {
	k := i
	for _, p := range lit {
		if k >= len(rs) || !foldEq(rs[k], p) {
			return 0
		}
		k++
	}
	return k - i
}

var literalAlts = []string{"<start_of_text>", "<end_of_text>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// pretokenize is re.findall(pat, text) for open_clip's pattern.
func pretokenize(rs []rune) []string {
	var out []string
	for i := 0; i < len(rs); {
		r := rs[i]
		if r == '<' || r == '\'' {
			m := 0
			for _, lit := range literalAlts {
				if m = matchLiteral(rs, i, lit); m > 0 {
					break
				}
			}
			if m > 0 {
				out = append(out, string(rs[i:i+m]))
				i += m
				continue
			}
		}
		switch c := classify(r); c {
		case clsLetter, clsOther:
			j := i + 1
			for j < len(rs) && classify(rs[j]) == c {
				j++
			}
			out = append(out, string(rs[i:j]))
			i = j
		case clsNumber:
			out = append(out, string(r))
			i++
		default:
			i++
		}
	}
	return out
}

type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpe runs open_clip's SimpleTokenizer.bpe on one pre-tokenised piece and
// returns vocabulary ids.
func (t *Tokenizer) bpe(piece string) []int32 {
	if id, ok := t.special[piece]; ok {
		return []int32{id}
	}
	b := []byte(piece)
	word := make([]int32, len(b))
	for i, c := range b {
		if i == len(b)-1 {
			word[i] = t.byteEOWID[c]
		} else {
			word[i] = t.byteID[c]
		}
	}
	for len(word) > 1 {
		best := merge{rank: -1}
		bi := -1
		for i := 0; i+1 < len(word); i++ {
			if m, ok := t.merges[pairKey(word[i], word[i+1])]; ok && (bi < 0 || m.rank < best.rank) {
				best, bi = m, i
			}
		}
		if bi < 0 {
			break
		}
		first, second := word[bi], word[bi+1]
		w := 0
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				word[w] = best.id
				i += 2
			} else {
				word[w] = word[i]
				i++
			}
			w++
		}
		word = word[:w]
	}
	return word
}

// pyDecodeUTF8Replace is bytes.decode("utf-8", errors="replace"): each
// maximal invalid subpart becomes one U+FFFD, as CPython does.
func pyDecodeUTF8Replace(p []byte) []rune {
	out := make([]rune, 0, len(p))
	for i := 0; i < len(p); {
		b := p[i]
		if b < 0x80 {
			out = append(out, rune(b))
			i++
			continue
		}
		var n int
		lo, hi := byte(0x80), byte(0xbf)
		switch {
		case b >= 0xc2 && b <= 0xdf:
			n = 2
		case b == 0xe0:
			n, lo = 3, 0xa0
		case b == 0xed:
			n, hi = 3, 0x9f
		case b >= 0xe1 && b <= 0xef:
			n = 3
		case b == 0xf0:
			n, lo = 4, 0x90
		case b >= 0xf1 && b <= 0xf3:
			n = 4
		case b == 0xf4:
			n, hi = 4, 0x8f
		default:
			out = append(out, 0xfffd)
			i++
			continue
		}
		k := 1
		for k < n && i+k < len(p) {
			c := p[i+k]
			if k == 1 {
				if c < lo || c > hi {
					break
				}
			} else if c < 0x80 || c > 0xbf {
				break
			}
			k++
		}
		if k < n {
			out = append(out, 0xfffd)
			i += k
			continue
		}
		r := rune(b) & (0xff >> (n + 1))
		for _, c := range p[i+1 : i+n] {
			r = r<<6 | rune(c&0x3f)
		}
		out = append(out, r)
		i += n
	}
	return out
}
