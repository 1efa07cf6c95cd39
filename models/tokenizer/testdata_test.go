package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Reference data made by tests/tokenizer/gen_tokenizer.py from open_clip.

type refCase struct {
	Group   string  `json:"group"`
	Text    string  `json:"text"`
	IDs     []int64 `json:"ids"`
	Encode  []int   `json:"encode"`
	Clean   string  `json:"clean"`
	FixText string  `json:"fix_text"`
	Decode  string  `json:"decode"`
}

type refData struct {
	Meta struct {
		Python       string `json:"python"`
		Unicodedata  string `json:"unicodedata"`
		Regex        string `json:"regex"`
		Ftfy         string `json:"ftfy"`
		OpenClip     string `json:"open_clip"`
		TablesDigest string `json:"tables_digest"`
		VocabSource  string `json:"vocab_source"`
		VocabSHA256  string `json:"vocab_sha256"`
		Context      int    `json:"context_length"`
		SOT          int    `json:"sot"`
		EOT          int    `json:"eot"`
		VocabSize    int    `json:"vocab_size"`
	} `json:"meta"`
	Prompts []struct {
		List       string `json:"list"`
		Action     string `json:"action"`
		Affordance string `json:"affordance"`
		Exo        string `json:"exo"`
	} `json:"prompts"`
	Cases        []refCase `json:"cases"`
	ContextCases []struct {
		Text          string  `json:"text"`
		ContextLength int     `json:"context_length"`
		IDs           []int64 `json:"ids"`
	} `json:"context_cases"`
	DecodeCases []struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	} `json:"decode_cases"`
	HTMLCases []struct {
		In       string `json:"in"`
		Unescape string `json:"unescape"`
		Ftfy     string `json:"ftfy"`
	} `json:"html_cases"`
	FtfyCases []struct {
		In    string `json:"in"`
		Out   string `json:"out"`
		Clean string `json:"clean"`
	} `json:"ftfy_cases"`
	IsBadCases [][2]any `json:"is_bad_cases"`
}

var (
	refOnce sync.Once
	refVal  *refData
	refTok  *Tokenizer
	refErr  string
)

// testdataDir is $AFFGD_TESTDATA/tokenizer, default <repo>/tests/testdata/tokenizer.
func testdataDir(t testing.TB) string {
	if d := os.Getenv("AFFGD_TESTDATA"); d != "" {
		return filepath.Join(d, "tokenizer")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "tests", "testdata", "tokenizer")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the repository root (go.mod)")
		}
		dir = parent
	}
}

// reference loads the reference data and a tokenizer on the copied vocab;
// missing data is a test failure, not a skip.
func reference(t testing.TB) (*refData, *Tokenizer) {
	t.Helper()
	dir := testdataDir(t)
	refOnce.Do(func() {
		raw, err := os.ReadFile(filepath.Join(dir, "tokenizer_ref.json"))
		if err != nil {
			refErr = "reference data missing: run 'make testdata' (" + err.Error() + ")"
			return
		}
		var d refData
		if err := json.Unmarshal(raw, &d); err != nil {
			refErr = "reference data unreadable, rerun 'make testdata': " + err.Error()
			return
		}
		tok, err := Load(filepath.Join(dir, VocabFileName))
		if err != nil {
			refErr = "reference data missing: run 'make testdata' (" + err.Error() + ")"
			return
		}
		refVal, refTok = &d, tok
	})
	if refErr != "" {
		t.Fatal(refErr)
	}
	return refVal, refTok
}
