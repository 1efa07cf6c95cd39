package report

import (
	"image/color"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// trainingRun makes n epochs of plausible figures.
func trainingRun(n int) []EpochPoint {
	var pts []EpochPoint
	for e := 1; e <= n; e++ {
		d := math.Exp(-float64(e) / 6)
		pts = append(pts, EpochPoint{
			Epoch: e,
			Losses: map[string]float64{
				"L_ce_ego": 3.6*d + 0.2, "L_ce_exo": 3.5*d + 0.3, "L_pix": 0.7*d + 0.1,
				"L_proto": 0.5*d + 0.05, "loss": 8.3*d + 0.65,
			},
			KLD: map[string]float64{"cam": 1.6 - 0.4*(1-d), "ree": 1.5 - 0.38*(1-d), "rem": 1.55 - 0.39*(1-d)},
		})
	}
	return pts
}

func TestPlotTraining(t *testing.T) {
	nan := math.NaN()
	withNaN := trainingRun(8)
	withNaN[2].Losses["L_pix"] = nan
	withNaN[3].KLD["ree"] = math.Inf(1)
	withNaN[5].Losses = nil
	allNaN := trainingRun(3)
	for i := range allNaN {
		allNaN[i].KLD = map[string]float64{"cam": nan, "ree": nan, "rem": nan}
	}
	extra := trainingRun(4)
	extra[1].Losses["L_extra"] = 0.5
	unsorted := trainingRun(5)
	unsorted[0], unsorted[4] = unsorted[4], unsorted[0]
	tests := []struct {
		name   string
		epochs []EpochPoint
	}{
		{"one epoch", trainingRun(1)},
		{"fifteen epochs", trainingRun(15)},
		{"two hundred epochs", trainingRun(200)},
		{"NaN and Inf values skipped", withNaN},
		{"a panel without any finite value", allNaN},
		{"an extra series", extra},
		{"epochs out of order", unsorted},
		{"constant values", []EpochPoint{{Epoch: 3, Losses: map[string]float64{"loss": 1}, KLD: map[string]float64{"ree": 1}}, {Epoch: 4, Losses: map[string]float64{"loss": 1}, KLD: map[string]float64{"ree": 1}}}},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".png")
			if err := PlotTraining(path, tc.epochs); err != nil {
				t.Fatal(err)
			}
			im := readPNG(t, path)
			if b := im.Bounds(); b.Dx() != 864 || b.Dy() != 864 {
				t.Fatalf("plot is %v, want 864×864", b)
			}
			// Both panels must have drawn something coloured (a series), not only black and white.
			for _, half := range []struct{ y0, y1 int }{{0, 432}, {432, 864}} {
				if tc.name == "a panel without any finite value" && half.y0 == 432 {
					continue
				}
				if !hasColour(im, half.y0, half.y1) {
					t.Errorf("rows %d..%d hold no coloured pixel", half.y0, half.y1)
				}
			}
		})
	}
	assertNoTemp(t, dir, len(tests))
}

func hasColour(im interface {
	At(x, y int) color.Color
}, y0, y1 int) bool {
	for y := y0; y < y1; y += 2 {
		for x := 0; x < 864; x += 2 {
			r, g, b, _ := im.At(x, y).RGBA()
			if max(r, g, b)-min(r, g, b) > 0x4000 {
				return true
			}
		}
	}
	return false
}

func TestPlotTrainingErrors(t *testing.T) {
	dir := t.TempDir()
	dup := trainingRun(3)
	dup[2].Epoch = 2
	tests := []struct {
		name   string
		path   string
		epochs []EpochPoint
		want   string
	}{
		{"no epochs", filepath.Join(dir, "a.png"), nil, "no epochs to plot"},
		{"duplicate epoch", filepath.Join(dir, "b.png"), dup, "epoch 2 appears twice"},
		{"missing folder", filepath.Join(dir, "no", "c.png"), trainingRun(2), "no such file or directory"},
		{"empty path", "", trainingRun(2), "empty output path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := PlotTraining(tc.path, tc.epochs)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "report: plot training ") {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	assertNoTemp(t, dir, 0)
}

func TestEpochTicks(t *testing.T) {
	tests := []struct {
		min, max float64
		labels   []string
	}{
		{0.5, 1.5, []string{"1"}},
		{0.5, 5.5, []string{"1", "2", "3", "4", "5"}},
		{0.5, 30.5, []string{"5", "10", "15", "20", "25", "30"}},
		{0.5, 200.5, []string{"20", "40", "60", "80", "100", "120", "140", "160", "180", "200"}},
		{0.2, 0.8, nil},
	}
	for _, tc := range tests {
		var labels []string
		for _, tk := range (epochTicks{}).Ticks(tc.min, tc.max) {
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
			if tk.Value != math.Trunc(tk.Value) {
				t.Errorf("[%v, %v]: tick at %v is not a whole epoch", tc.min, tc.max, tk.Value)
			}
		}
		if strings.Join(labels, ",") != strings.Join(tc.labels, ",") {
			t.Errorf("[%v, %v]: labels %v, want %v", tc.min, tc.max, labels, tc.labels)
		}
	}
}
