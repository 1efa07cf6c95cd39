package sweep

import (
	"strings"
	"testing"

	"github.com/affgd/affgd/trainer"
)

func base() trainer.Config {
	c := trainer.DefaultConfig()
	c.DataRoot, c.DINO, c.CLIP = "/d", "/a.pth", "/b.pt"
	return c
}

func TestParseAxis(t *testing.T) {
	for _, tc := range []struct {
		in, key, vals, wantErr string
	}{
		{"alpha=0.4,0.5", "alpha", "0.4|0.5", ""},
		{"loss_weights.pixel=0, 1", "loss_weights.pixel", "0|1", ""},
		{"alfa=1", "", "", "valid keys"},
		{"alpha", "", "", "KEY=VALUE"},
		{"alpha=0.4,,0.5", "", "", "empty value"},
		{"alpha=0.4,0.4", "", "", "twice"},
		{"device=cpu,cuda", "", "", "--devices"},
		{"out_dir=a,b", "", "", "set by the sweep"},
	} {
		a, err := ParseAxis(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || a.Key != tc.key || strings.Join(a.Values, "|") != tc.vals {
			t.Errorf("%s: %+v, %v", tc.in, a, err)
		}
	}
}

func TestNewPlan(t *testing.T) {
	p, err := NewPlan(base(), []Axis{{"alpha", []string{"0.4", "0.5"}}, {"kmeans_k", []string{"2", "3", "4"}}}, "/s")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pt := range p.Points {
		names = append(names, pt.Name)
	}
	want := "alpha=0.4,kmeans_k=2 alpha=0.4,kmeans_k=3 alpha=0.4,kmeans_k=4 alpha=0.5,kmeans_k=2 alpha=0.5,kmeans_k=3 alpha=0.5,kmeans_k=4"
	if strings.Join(names, " ") != want {
		t.Errorf("points %v", names)
	}
	last := p.Points[5]
	if last.Config.Alpha != 0.5 || last.Config.KMeansK != 4 || last.Config.OutDir != "/s/runs/alpha=0.5,kmeans_k=4" {
		t.Errorf("last point %+v", last.Config)
	}
	if got := strings.Join(p.Command("/bin/affgd", last), " "); got != "/bin/affgd train --config /s/configs/alpha=0.5,kmeans_k=4.yaml" {
		t.Errorf("command %s", got)
	}
	// Every point is validated before anything runs; values that are not names are made safe.
	if _, err := NewPlan(base(), []Axis{{"kmeans_k", []string{"2", "0"}}}, "/s"); err == nil || !strings.Contains(err.Error(), "point kmeans_k=0: config: kmeans_k") {
		t.Errorf("kmeans_k 0: %v", err)
	}
	p, err = NewPlan(base(), []Axis{{"init", []string{"/w/a b.pth", "/w/a?b.pth"}}}, "/s")
	if err != nil || p.Points[0].Name != "init=_w_a_b.pth" || p.Points[1].Name != "001-init=_w_a_b.pth" {
		t.Errorf("unsafe values: %v %v", p.Points, err)
	}
}

func TestGridDiff(t *testing.T) {
	mk := func(c trainer.Config, axes ...Axis) grid {
		p, err := NewPlan(c, axes, "/s")
		if err != nil {
			t.Fatal(err)
		}
		return p.grid()
	}
	a := Axis{"alpha", []string{"0.4", "0.5"}}
	k := Axis{"kmeans_k", []string{"2", "3"}}
	other := base()
	other.LR, other.Device, other.Workers = 0.01, "cuda", 3
	machine := base()
	machine.Device, machine.Threads = "cuda:1", 4
	for _, tc := range []struct {
		name string
		x, y grid
		want string
	}{
		{"same", mk(base(), a, k), mk(machine, a, k), ""},
		{"values", mk(base(), a, k), mk(base(), Axis{"alpha", []string{"0.4", "0.6"}}, k), "--set alpha"},
		{"keys", mk(base(), a, k), mk(base(), a), "--set kmeans_k"},
		{"order", mk(base(), a, k), mk(base(), k, a), "the order of --set"},
		{"base", mk(base(), a), mk(other, a), "lr"},
	} {
		if got := strings.Join(gridDiff(tc.x, tc.y), ", "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b=c,d.yaml": "/a/b=c,d.yaml",
		"a b":           "'a b'",
		"it's":          `'it'\''s'`,
		"":              "''",
		"$HOME":         "'$HOME'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
