package tokenizer

import (
	_ "embed" // the vocabulary below
	"sync"
)

// embeddedVocab is CLIP's bpe_simple_vocab_16e6.txt.gz as open_clip ships it (MIT licence, notice
// in vocab/LICENSE), so that the binary needs no Python package at run time.
//
//go:embed vocab/bpe_simple_vocab_16e6.txt.gz
var embeddedVocab []byte

// EmbeddedVocabName is how errors and logs name the embedded vocabulary.
const EmbeddedVocabName = "embedded " + VocabFileName

// EmbeddedVocab returns the bytes of the embedded vocabulary file (gzip), e.g. to write a copy.
func EmbeddedVocab() []byte { return embeddedVocab }

var embedded struct {
	once sync.Once
	tok  *Tokenizer
	err  error
}

// Embedded returns the tokenizer of the embedded vocabulary, built on the first call and shared
// afterwards (a Tokenizer is safe for concurrent use).
func Embedded() (*Tokenizer, error) {
	embedded.once.Do(func() { embedded.tok, embedded.err = parse(EmbeddedVocabName, embeddedVocab) })
	return embedded.tok, embedded.err
}

// LoadOrEmbedded loads the vocabulary file at path; with path "" the one named by
// $AFFGD_BPE_VOCAB ([DefaultVocabPath]), and when that is not set either, the embedded copy.
// It returns the tokenizer and the name of what it read.
func LoadOrEmbedded(path string) (*Tokenizer, string, error) {
	if path == "" {
		path = DefaultVocabPath()
	}
	if path == "" {
		t, err := Embedded()
		return t, EmbeddedVocabName, err
	}
	t, err := Load(path)
	return t, path, err
}
