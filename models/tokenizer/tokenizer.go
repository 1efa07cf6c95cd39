// Package tokenizer is a pure-Go port of CLIP's byte-level BPE tokenizer as
// implemented by open_clip (open_clip.tokenizer.SimpleTokenizer and
// open_clip.tokenize, default "lower" cleaning), producing the same token ids
// for every input.
//
// The pipeline is the one of open_clip 3.x:
//
//  1. basic_clean: ftfy.fix_text (ported in full, default configuration of
//     ftfy 6.3: HTML entities, mojibake repair, C1 controls, ligatures,
//     character width, curly quotes, line breaks, terminal escapes, control
//     characters, NFC), then html.unescape twice, then strip;
//  2. whitespace_clean (" ".join(text.split())) and str.lower();
//  3. the pre-tokenisation pattern
//     `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//     (case-insensitive);
//  4. each piece as UTF-8 bytes through bytes_to_unicode, then BPE merges by
//     rank (the last symbol carries "</w>").
//
// Character properties (Python's str methods, the regex module's classes,
// unicodedata's NFC data, ftfy's tables) come from tables_gen.go, generated
// from the Python environment that the reference tests use, so they do not
// depend on the Unicode version of Go's unicode package.
//
// Differences from open_clip: Go strings that are not valid UTF-8 are
// rejected (a Python str cannot hold such data), and Tokenize reports texts
// that do not fit the context length unless truncation is requested (open_clip
// always truncates, keeping the end-of-text token last).
package tokenizer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// DefaultContextLength is the context length of all CLIP text encoders.
	DefaultContextLength = 77
	// NumMerges is the number of BPE merges open_clip reads from the vocab
	// file (lines 1..48894, i.e. merges[1:49152-256-2+1]).
	NumMerges = 49152 - 256 - 2
	// VocabSize is the size of the vocabulary: 256 byte symbols, their
	// "</w>" forms, one token per merge and the two special tokens.
	VocabSize = 512 + NumMerges + 2
	// StartOfText is the id of "<start_of_text>".
	StartOfText = VocabSize - 2
	// EndOfText is the id of "<end_of_text>".
	EndOfText = VocabSize - 1
	// VocabFileName is the base name of CLIP's BPE vocabulary file.
	VocabFileName = "bpe_simple_vocab_16e6.txt.gz"
)

// maxCacheEntries bounds the per-tokenizer BPE cache; it is cleared when full.
const maxCacheEntries = 1 << 16

// Tokenizer is a loaded CLIP BPE vocabulary. It is safe for concurrent use.
type Tokenizer struct {
	vocab     []string         // id -> token string
	encoder   map[string]int32 // token string -> id
	merges    map[uint64]merge // (left id, right id) -> rank and merged id
	byteID    [256]int32       // byte -> id of its symbol
	byteEOWID [256]int32       // byte -> id of its symbol + "</w>"
	special   map[string]int32

	mu    sync.RWMutex
	cache map[string][]int32
}

// TooLongError reports a text whose tokens (with the start and end markers)
// do not fit the context length and truncation was not requested.
type TooLongError struct {
	Index         int    // position of the text in the Tokenize input
	Text          string // the text as given
	Tokens        int    // number of tokens including <start_of_text> and <end_of_text>
	ContextLength int    // the limit it exceeds
}

// Error describes the text (abbreviated), its length and the limit.
func (e *TooLongError) Error() string {
	return fmt.Sprintf("tokenizer: text %d %q has %d tokens including start/end markers, more than the context length %d (ask for truncation to cut it)",
		e.Index, abbreviate(e.Text, 48), e.Tokens, e.ContextLength)
}

// InvalidUTF8Error reports input that is not valid UTF-8 (open_clip works on
// Python str values, which cannot hold such data).
type InvalidUTF8Error struct {
	Index  int    // position of the text in the Tokenize input; -1 for Encode and Clean
	Offset int    // byte offset of the first invalid sequence
	Text   string // the text as given
}

// Error names the byte offset and shows the start of the text.
func (e *InvalidUTF8Error) Error() string {
	which := "text"
	if e.Index >= 0 {
		which = fmt.Sprintf("text %d", e.Index)
	}
	return fmt.Sprintf("tokenizer: invalid UTF-8 at byte offset %d in %s %q", e.Offset, which, abbreviate(e.Text, 48))
}

func abbreviate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	rs := []rune(s)
	return string(rs[:n]) + "…"
}

// Load reads CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, or the
// same file uncompressed) and builds the 49408-token vocabulary exactly as
// open_clip's SimpleTokenizer does. Errors name the path.
func Load(vocabPath string) (*Tokenizer, error) {
	raw, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: reading BPE vocabulary %q: %w", vocabPath, err)
	}
	return parse(vocabPath, raw)
}

// parse builds a tokenizer from the bytes of a vocabulary file (gzip or plain); vocabPath names
// it in errors.
func parse(vocabPath string, raw []byte) (*Tokenizer, error) {
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: BPE vocabulary %q: corrupt gzip data: %w", vocabPath, err)
		}
		raw, err = io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: BPE vocabulary %q: corrupt gzip data: %w", vocabPath, err)
		}
	}
	if off := firstInvalidUTF8(string(raw)); off >= 0 {
		return nil, fmt.Errorf("tokenizer: BPE vocabulary %q: invalid UTF-8 at byte %d (not a CLIP vocabulary file?)", vocabPath, off)
	}
	t, err := build(string(raw))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: BPE vocabulary %q: %w", vocabPath, err)
	}
	return t, nil
}

func build(text string) (*Tokenizer, error) {
	lines := strings.SplitN(text, "\n", NumMerges+2) // the rest of the file is unused
	if len(lines)-1 < NumMerges {
		return nil, fmt.Errorf("has %d merge lines after the header, need %d (truncated or not a CLIP vocabulary file)", max(len(lines)-1, 0), NumMerges)
	}
	mergeLines := lines[1 : NumMerges+1]
	pairs := make([][2]string, NumMerges)
	for i, l := range mergeLines {
		f := splitPyWhitespace(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: expected two symbols, got %q", i+2, abbreviate(l, 40))
		}
		pairs[i] = [2]string{f[0], f[1]}
	}
	vocab := make([]string, 0, VocabSize)
	for _, b := range byteOrder {
		vocab = append(vocab, string(byteEncoder[b]))
	}
	for _, b := range byteOrder {
		vocab = append(vocab, string(byteEncoder[b])+"</w>")
	}
	for _, p := range pairs {
		vocab = append(vocab, p[0]+p[1])
	}
	vocab = append(vocab, "<start_of_text>", "<end_of_text>")
	t := &Tokenizer{
		vocab:   vocab,
		encoder: make(map[string]int32, len(vocab)),
		merges:  make(map[uint64]merge, NumMerges),
		special: map[string]int32{"<start_of_text>": StartOfText, "<end_of_text>": EndOfText},
		cache:   make(map[string][]int32),
	}
	for i, s := range vocab {
		t.encoder[s] = int32(i) // later duplicates win, as in dict(zip(...))
	}
	if t.encoder["<start_of_text>"] != StartOfText || t.encoder["<end_of_text>"] != EndOfText {
		return nil, errors.New("special tokens collide with merged tokens")
	}
	for b := 0; b < 256; b++ {
		t.byteID[b] = t.encoder[string(byteEncoder[b])]
		t.byteEOWID[b] = t.encoder[string(byteEncoder[b])+"</w>"]
	}
	for rank, p := range pairs {
		a, okA := t.encoder[p[0]]
		b, okB := t.encoder[p[1]]
		if !okA || !okB {
			continue // a pair of non-tokens can never occur in a word
		}
		t.merges[pairKey(a, b)] = merge{rank: int32(rank), id: t.encoder[p[0]+p[1]]}
	}
	return t, nil
}

// splitPyWhitespace is str.split() with no arguments.
func splitPyWhitespace(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		if setPySpace.has(r) {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// Clean applies open_clip's default text cleaning ("lower"): ftfy.fix_text,
// html.unescape twice, strip, whitespace collapsing and str.lower. The text
// must be valid UTF-8.
func Clean(text string) (string, error) {
	if off := firstInvalidUTF8(text); off >= 0 {
		return "", &InvalidUTF8Error{Index: -1, Offset: off, Text: text}
	}
	return string(clean([]rune(text))), nil
}

func clean(rs []rune) []rune {
	rs = ftfyFixText(rs)
	rs = htmlUnescape(htmlUnescape(rs))
	rs = pyStrip(rs)
	rs = pyJoinSplit(rs)
	return pyLower(rs)
}

// Encode returns the BPE token ids of text, without the start/end markers,
// exactly as open_clip's SimpleTokenizer().encode(text). Text that is not
// valid UTF-8 yields an *InvalidUTF8Error.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	if off := firstInvalidUTF8(text); off >= 0 {
		return nil, &InvalidUTF8Error{Index: -1, Offset: off, Text: text}
	}
	var ids []int
	for _, piece := range pretokenize(clean([]rune(text))) {
		for _, id := range t.bpeCached(piece) {
			ids = append(ids, int(id))
		}
	}
	return ids, nil
}

func (t *Tokenizer) bpeCached(piece string) []int32 {
	t.mu.RLock()
	ids, ok := t.cache[piece]
	t.mu.RUnlock()
	if ok {
		return ids
	}
	ids = t.bpe(piece)
	t.mu.Lock()
	if len(t.cache) >= maxCacheEntries {
		t.cache = make(map[string][]int32)
	}
	t.cache[piece] = ids
	t.mu.Unlock()
	return ids
}

// Tokenize encodes each text as <start_of_text> ids <end_of_text>, zero
// padded to contextLength, like open_clip.tokenize. A contextLength of 0
// means DefaultContextLength (as open_clip's `context_length or 77`); a
// negative one is an error. A text whose tokens do not fit yields a
// *TooLongError unless truncate is set, in which case it is cut to
// contextLength tokens with <end_of_text> last, exactly as open_clip does.
func (t *Tokenizer) Tokenize(texts []string, contextLength int, truncate bool) ([][]int64, error) {
	if contextLength == 0 {
		contextLength = DefaultContextLength
	}
	if contextLength < 0 {
		return nil, fmt.Errorf("tokenizer: invalid context length %d", contextLength)
	}
	out := make([][]int64, len(texts))
	for i, text := range texts {
		ids, err := t.Encode(text)
		if err != nil {
			var iu *InvalidUTF8Error
			if errors.As(err, &iu) {
				iu.Index = i
			}
			return nil, err
		}
		n := len(ids) + 2
		if n > contextLength && !truncate {
			return nil, &TooLongError{Index: i, Text: text, Tokens: n, ContextLength: contextLength}
		}
		row := make([]int64, contextLength)
		toks := make([]int64, 0, n)
		toks = append(toks, StartOfText)
		for _, id := range ids {
			toks = append(toks, int64(id))
		}
		toks = append(toks, EndOfText)
		if len(toks) > contextLength {
			toks = toks[:contextLength]
			toks[contextLength-1] = EndOfText
		}
		copy(row, toks)
		out[i] = row
	}
	return out, nil
}

// Decode turns ids back into text as open_clip's SimpleTokenizer.decode:
// token strings are concatenated, mapped back to bytes, decoded as UTF-8
// with U+FFFD for invalid sequences (CPython's "replace" rules), and "</w>"
// becomes a space. Ids outside the vocabulary (where open_clip raises
// KeyError) are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		if id < 0 || id >= len(t.vocab) {
			continue
		}
		for _, r := range t.vocab[id] {
			b = append(b, byteDecoder[r])
		}
	}
	return strings.ReplaceAll(string(pyDecodeUTF8Replace(b)), "</w>", " ")
}

// AffordancePrompt is the affordance text prompt for an action class name:
// "an item to " + name, followed by " with" unless the name already
// contains "with" (e.g. "cut_with"). Underscores are kept.
func AffordancePrompt(action string) string {
	p := "an item to " + action
	if !strings.Contains(action, "with") {
		p += " with"
	}
	return p
}

// ExoPrompt is the exocentric (person-centred) text prompt for an action:
// "a person " + name + " an item". Underscores are kept.
func ExoPrompt(action string) string {
	return "a person " + action + " an item"
}

// DefaultVocabPath is the vocabulary file named by $AFFGD_BPE_VOCAB (returned as is, so Load
// reports a wrong setting), or "" when it is not set: then [LoadOrEmbedded] uses the copy
// embedded in the binary.
func DefaultVocabPath() string {
	return os.Getenv("AFFGD_BPE_VOCAB")
}
