package tokenizer

import "strings"

// Ports of Python's html.unescape (HTML5 rules: named references with and
// without ';', longest-prefix matching for legacy names, numeric references
// with the HTML5 replacement table) and of ftfy.fixes.unescape_html.

var (
	htmlInvalidCodepoints map[int]bool
	// ftfyEntities is ftfy.chardata.HTML_ENTITIES: "&name;" -> text.
	ftfyEntities map[string]string
)

func init() {
	htmlInvalidCodepoints = make(map[int]bool, len(tabHTMLInvalidCodepoints))
	for _, c := range tabHTMLInvalidCodepoints {
		htmlInvalidCodepoints[int(c)] = true
	}
	ftfyEntities = make(map[string]string, len(tabHTML5)+len(tabFtfyEntityExtras))
	for name, v := range tabHTML5 {
		if strings.HasSuffix(name, ";") {
			ftfyEntities["&"+name] = v
		}
	}
	for k, v := range tabFtfyEntityExtras {
		ftfyEntities[k] = v
	}
}

const maxCharref = 0x110000 // anything above U+10FFFF behaves the same

// charrefNumber parses decimal or hex digits, saturating at maxCharref.
func charrefNumber(digits []rune, base int) int {
	n := 0
	for _, d := range digits {
		var v int
		switch {
		case d >= '0' && d <= '9':
			v = int(d - '0')
		case d >= 'a' && d <= 'f':
			v = int(d-'a') + 10
		default:
			v = int(d-'A') + 10
		}
		n = n*base + v
		if n > maxCharref {
			n = maxCharref
		}
	}
	return n
}

// numericCharref mirrors the numeric branch of html._replace_charref.
func numericCharref(num int) string {
	if s, ok := tabHTMLInvalidCharrefs[num]; ok {
		return s
	}
	if (num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff {
		return "\ufffd"
	}
	if htmlInvalidCodepoints[num] {
		return ""
	}
	return string(rune(num))
}

func isASCIIDigit(r rune) bool { return r >= '0' && r <= '9' }

func isASCIIHex(r rune) bool {
	return isASCIIDigit(r) || (r >= 'a' && r <= 'f') || (r >= 'A' && r <= 'F')
}

func isASCIIAlnum(r rune) bool {
	return isASCIIDigit(r) || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
}

// htmlUnescape is Python's html.unescape.
func htmlUnescape(rs []rune) []rune {
	if !containsRune(rs, '&') {
		return rs
	}
	n := len(rs)
	out := make([]rune, 0, n)
	for i := 0; i < n; {
		if rs[i] != '&' {
			out = append(out, rs[i])
			i++
			continue
		}
		j := i + 1
		if j < n && rs[j] == '#' {
			// '#[0-9]+;?' then '#[xX][0-9a-fA-F]+;?'; the named form cannot
			// start with '#'.
			k := j + 1
			for k < n && isASCIIDigit(rs[k]) {
				k++
			}
			if k > j+1 {
				num := charrefNumber(rs[j+1:k], 10)
				if k < n && rs[k] == ';' {
					k++
				}
				out = append(out, []rune(numericCharref(num))...)
				i = k
				continue
			}
			if k < n && (rs[k] == 'x' || rs[k] == 'X') {
				m := k + 1
				for m < n && isASCIIHex(rs[m]) {
					m++
				}
				if m > k+1 {
					num := charrefNumber(rs[k+1:m], 16)
					if m < n && rs[m] == ';' {
						m++
					}
					out = append(out, []rune(numericCharref(num))...)
					i = m
					continue
				}
			}
			out = append(out, '&')
			i++
			continue
		}
		// '[^\t\n\f <&#;]{1,32};?'
		k := j
		for k < n && k-j < 32 {
			r := rs[k]
			if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
				break
			}
			k++
		}
		if k == j {
			out = append(out, '&')
			i++
			continue
		}
		if k < n && rs[k] == ';' {
			k++
		}
		name := rs[j:k]
		if v, ok := tabHTML5[string(name)]; ok {
			out = append(out, []rune(v)...)
		} else {
			found := false
			for x := len(name) - 1; x > 1; x-- {
				if v, ok := tabHTML5[string(name[:x])]; ok {
					out = append(out, []rune(v)...)
					out = append(out, name[x:]...)
					found = true
					break
				}
			}
			if !found {
				out = append(out, '&')
				out = append(out, name...)
			}
		}
		i = k
	}
	return out
}

// ftfyUnescapeHTML is ftfy.fixes.unescape_html: only '&#?[0-9A-Za-z]{1,24};'
// references are decoded, named ones through ftfy's entity table (which adds
// upper-cased variants such as "&EACUTE;").
func ftfyUnescapeHTML(rs []rune) []rune {
	if !containsRune(rs, '&') {
		return rs
	}
	n := len(rs)
	out := make([]rune, 0, n)
	for i := 0; i < n; {
		if rs[i] != '&' {
			out = append(out, rs[i])
			i++
			continue
		}
		j := i + 1
		if j < n && rs[j] == '#' {
			j++
		}
		k := j
		for k < n && isASCIIAlnum(rs[k]) {
			k++
		}
		if k == j || k-j > 24 || k >= n || rs[k] != ';' {
			out = append(out, '&')
			i++
			continue
		}
		k++ // the ';'
		match := rs[i:k]
		ms := string(match)
		switch v, ok := ftfyEntities[ms]; {
		case ok:
			out = append(out, []rune(v)...)
		case strings.HasPrefix(ms, "&#"):
			u := htmlUnescape(match)
			if containsRune(u, ';') {
				out = append(out, match...)
			} else {
				out = append(out, u...)
			}
		default:
			out = append(out, match...)
		}
		i = k
	}
	return out
}
