package browser

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestErrorsAreCaught opens pages from file URLs and checks that a console.error, an uncaught
// exception and a missing picture are each reported, and that a clean page reports nothing.
func TestErrorsAreCaught(t *testing.T) {
	bin := ForTest(t)
	dir := t.TempDir()
	pages := map[string]string{
		"clean.html":     `<p id="p">ok</p><script>document.getElementById("p").textContent = "js ran";</script>`,
		"console.html":   `<script>console.error("bad thing")</script>`,
		"exception.html": `<script>undefinedFunction()</script>`,
		"missing.html":   `<img src="nope.jpg">`,
	}
	for name, body := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("<!DOCTYPE html><html><body>"+body+"</body></html>"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := New(bin, Options{Width: 400, Height: 300, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct {
		page string
		want string // "" = no error
	}{
		{"clean.html", ""},
		{"console.html", "bad thing"},
		{"exception.html", "undefinedFunction"},
		{"missing.html", "nope.jpg"},
	} {
		before := len(b.Errors())
		if err := b.Open("file://" + filepath.Join(dir, tc.page)); err != nil {
			t.Fatalf("%s: %v", tc.page, err)
		}
		// a round trip after the load: every event of the page has been seen
		if _, err := Eval[bool](b, "true"); err != nil {
			t.Fatal(err)
		}
		got := b.Errors()[before:]
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: errors %q, want none", tc.page, got)
		case tc.want != "" && !strings.Contains(fmt.Sprint(got), tc.want):
			t.Errorf("%s: errors %q, want one naming %q", tc.page, got, tc.want)
		}
	}
	text, err := Eval[string](b, `document.body.textContent`)
	if err != nil || text != "" {
		t.Errorf("missing.html body %q (%v)", text, err)
	}
}
