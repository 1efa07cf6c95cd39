package data

import (
	"strings"
	"testing"
)

func TestClassLists(t *testing.T) {
	for _, c := range []struct {
		d         Divide
		n         int
		first     string
		last      string
		labelOf   string
		wantLabel int64
	}{
		{Seen, 36, "beat", "write", "hold", 11},
		{Unseen, 25, "carry", "wash", "hold", 7},
		{HICO, 10, "cut_with", "type_on", "hold", 2},
	} {
		cl := c.d.Classes()
		if len(cl) != c.n || cl[0] != c.first || cl[len(cl)-1] != c.last {
			t.Errorf("%s: %d classes from %s to %s", c.d, len(cl), cl[0], cl[len(cl)-1])
		}
		if l, err := c.d.Label(c.labelOf); err != nil || l != c.wantLabel {
			t.Errorf("%s: label of %s = %d, %v", c.d, c.labelOf, l, err)
		}
	}
	if _, err := Seen.Label("fly"); err == nil || !strings.Contains(err.Error(), "valid actions: beat") {
		t.Errorf("unknown action: %v", err)
	}
	for in, want := range map[string]Divide{"Seen": Seen, "unseen": Unseen, "HICO-IIF": HICO, "hico": HICO} {
		if d, err := ParseDivide(in); err != nil || d != want {
			t.Errorf("ParseDivide(%q) = %v, %v", in, d, err)
		}
	}
	if _, err := ParseDivide("both"); err == nil {
		t.Error("ParseDivide accepted an unknown split")
	}
}
