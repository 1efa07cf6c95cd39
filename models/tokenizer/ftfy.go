package tokenizer

import "bytes"

// Port of ftfy.fix_text with its default TextFixerConfig (ftfy 6.3.1): the
// text is fixed in segments ending at '\n'; each segment goes through
// unescape_html ("auto"), fix_encoding (with restore_byte_a0,
// replace_lossy_sequences, decode_inconsistent_utf8, fix_c1_controls),
// fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
// fix_line_breaks, fix_surrogates, remove_terminal_escapes,
// remove_control_chars and NFC, repeated until nothing changes.
//
// fix_surrogates is a no-op here: valid UTF-8 input cannot hold surrogate
// code points, and none of the steps can produce one.

const ftfyMaxDecodeLength = 1000000

// ftfyFixText is ftfy.fix_text(text).
func ftfyFixText(rs []rune) []rune {
	if len(rs) == 0 {
		return rs
	}
	out := make([]rune, 0, len(rs))
	unescape := true // "auto"; once a segment contains '<' it stays off
	for pos := 0; pos < len(rs); {
		end := len(rs)
		for k := pos; k < len(rs); k++ {
			if rs[k] == '\n' {
				end = k + 1
				break
			}
		}
		if end-pos > ftfyMaxDecodeLength {
			end = pos + ftfyMaxDecodeLength
		}
		seg := rs[pos:end]
		if unescape && containsRune(seg, '<') {
			unescape = false
		}
		out = append(out, ftfyFixSegment(seg, unescape)...)
		pos = end
	}
	return out
}

// ftfyFixSegment is ftfy.fix_and_explain with explain=False.
func ftfyFixSegment(text []rune, unescape bool) []rune {
	if unescape && containsRune(text, '<') {
		unescape = false
	}
	for {
		orig := text
		if unescape {
			text = ftfyUnescapeHTML(text)
		}
		text = fixEncoding(text)
		text = fixC1Controls(text)
		text = translateRunes(text, tabLigatures)
		text = translateRunes(text, tabWidthMap)
		text = uncurlQuotes(text)
		text = fixLineBreaks(text)
		text = removeTerminalEscapes(text)
		text = removeControlChars(text)
		text = nfc(text)
		if runesEqual(text, orig) {
			return text
		}
	}
}

// fixEncoding is ftfy.fix_encoding.
func fixEncoding(text []rune) []rune {
	for {
		prev := text
		text = fixEncodingOneStep(text)
		if runesEqual(text, prev) {
			return text
		}
	}
}

// fixEncodingOneStep is ftfy._fix_encoding_one_step_and_explain.
func fixEncodingOneStep(text []rune) []rune {
	if len(text) == 0 || isASCIIRunes(text) || !isBad(text) {
		return text
	}
	latin1Possible := false
	for _, cm := range charmapOrder {
		if !cm.possible(text) {
			continue
		}
		if cm == charmapLatin1 {
			latin1Possible = true
		}
		b := cm.encodeRunes(text)
		if cm != charmapMacRoman && searchAlts(alteredUTF8, b) {
			b = restoreByteA0(b)
		}
		if cm.sloppy {
			b = replaceLossySequences(b)
		}
		var fixed []rune
		var ok bool
		if bytes.IndexByte(b, 0xed) >= 0 || bytes.IndexByte(b, 0xc0) >= 0 {
			fixed, ok = decodeUTF8Variants(b)
		} else {
			fixed, ok = decodeUTF8Strict(b)
		}
		if ok {
			return fixed
		}
	}
	if utf8DetectorSearch(text) {
		if fixed := decodeInconsistentUTF8(text); !runesEqual(fixed, text) {
			return fixed
		}
	}
	// ftfy checks for "windows-1252" among the possible encodings, a name that
	// CHARMAP_ENCODINGS never contains, so latin-1 text always gets this try.
	if latin1Possible {
		if fixed, ok := charmapWin1252.decodeStrict(charmapLatin1.encodeRunes(text)); ok && !runesEqual(fixed, text) {
			return fixed
		}
	}
	for _, r := range text {
		if r >= 0x80 && r <= 0x9f {
			return fixC1Controls(text)
		}
	}
	return text
}

// fixC1Controls is ftfy.fixes.fix_c1_controls.
func fixC1Controls(text []rune) []rune {
	var out []rune
	for i, r := range text {
		if r >= 0x80 && r <= 0x9f {
			if out == nil {
				out = append(make([]rune, 0, len(text)), text[:i]...)
			}
			out = append(out, rune(charmapSloppy.decode[r]))
			continue
		}
		if out != nil {
			out = append(out, r)
		}
	}
	if out == nil {
		return text
	}
	return out
}

// translateRunes is str.translate with a table of replacement strings.
func translateRunes(text []rune, table map[rune]string) []rune {
	var out []rune
	for i, r := range text {
		if r < 0x80 {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if rep, ok := table[r]; ok {
			if out == nil {
				out = append(make([]rune, 0, len(text)+4), text[:i]...)
			}
			out = append(out, []rune(rep)...)
			continue
		}
		if out != nil {
			out = append(out, r)
		}
	}
	if out == nil {
		return text
	}
	return out
}

// uncurlQuotes is ftfy.fixes.uncurl_quotes.
func uncurlQuotes(text []rune) []rune {
	var out []rune
	for i, r := range text {
		rep := r
		switch {
		case r == 0x2bc || (r >= 0x2018 && r <= 0x201b):
			rep = '\''
		case r >= 0x201c && r <= 0x201f:
			rep = '"'
		}
		if rep != r && out == nil {
			out = append(make([]rune, 0, len(text)), text[:i]...)
		}
		if out != nil {
			out = append(out, rep)
		}
	}
	if out == nil {
		return text
	}
	return out
}

// fixLineBreaks is ftfy.fixes.fix_line_breaks.
func fixLineBreaks(text []rune) []rune {
	changed := false
	for _, r := range text {
		if r == '\r' || r == 0x2028 || r == 0x2029 || r == 0x85 {
			changed = true
			break
		}
	}
	if !changed {
		return text
	}
	out := make([]rune, 0, len(text))
	for i := 0; i < len(text); i++ {
		r := text[i]
		switch r {
		case '\r':
			if i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			out = append(out, '\n')
		case 0x2028, 0x2029, 0x85:
			out = append(out, '\n')
		default:
			out = append(out, r)
		}
	}
	return out
}

// removeTerminalEscapes is ftfy.fixes.remove_terminal_escapes:
// "\033\[((?:\d|;)*)([a-zA-Z])" is deleted (\d: Unicode decimal digits).
func removeTerminalEscapes(text []rune) []rune {
	if !containsRune(text, 0x1b) {
		return text
	}
	out := make([]rune, 0, len(text))
	for i := 0; i < len(text); {
		if text[i] == 0x1b && i+1 < len(text) && text[i+1] == '[' {
			k := i + 2
			for k < len(text) && (text[k] == ';' || setReDigit.has(text[k])) {
				k++
			}
			if k < len(text) && isLatinLetter(text[k]) {
				i = k + 1
				continue
			}
		}
		out = append(out, text[i])
		i++
	}
	return out
}

// removeControlChars is ftfy.fixes.remove_control_chars.
func removeControlChars(text []rune) []rune {
	var out []rune
	for i, r := range text {
		if setFtfyControl.has(r) {
			if out == nil {
				out = append(make([]rune, 0, len(text)), text[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, r)
		}
	}
	if out == nil {
		return text
	}
	return out
}

// UTF8_DETECTOR_RE machinery (decode_inconsistent_utf8).

var (
	clueFirst2, clueFirst3, clueFirst4, clueCont, clueContStrict *runeSet
)

func init() {
	get := func(name string) *runeSet {
		tab, ok := tabUTF8Clues[name]
		if !ok {
			panic("tokenizer: missing UTF8_CLUES entry " + name)
		}
		return newRuneSet(tab)
	}
	clueFirst2 = get("utf8_first_of_2")
	clueFirst3 = get("utf8_first_of_3")
	clueFirst4 = get("utf8_first_of_4")
	clueCont = get("utf8_continuation")
	clueContStrict = get("utf8_continuation_strict")
}

// utf8DetectorAt returns the end of a UTF8_DETECTOR_RE match starting at i,
// or i if there is none.
func utf8DetectorAt(text []rune, i int) int {
	if i > 0 && clueContStrict.has(text[i-1]) {
		return i
	}
	p := i
	for {
		switch {
		case p+1 < len(text) && clueFirst2.has(text[p]) && clueCont.has(text[p+1]):
			p += 2
		case p+2 < len(text) && clueFirst3.has(text[p]) && clueCont.has(text[p+1]) && clueCont.has(text[p+2]):
			p += 3
		case p+3 < len(text) && clueFirst4.has(text[p]) && clueCont.has(text[p+1]) && clueCont.has(text[p+2]) && clueCont.has(text[p+3]):
			p += 4
		default:
			return p
		}
	}
}

func utf8DetectorSearch(text []rune) bool {
	for i := range text {
		if utf8DetectorAt(text, i) > i {
			return true
		}
	}
	return false
}

// decodeInconsistentUTF8 is ftfy.fixes.decode_inconsistent_utf8.
func decodeInconsistentUTF8(text []rune) []rune {
	out := make([]rune, 0, len(text))
	for i := 0; i < len(text); {
		end := utf8DetectorAt(text, i)
		if end == i {
			out = append(out, text[i])
			i++
			continue
		}
		sub := text[i:end]
		if len(sub) < len(text) && isBad(sub) {
			out = append(out, fixEncoding(sub)...)
		} else {
			out = append(out, sub...)
		}
		i = end
	}
	return out
}
