package report

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// With part-discovery figures the training plot grows two panels (864×1728), each drawn.
func TestPlotTrainingDiscovery(t *testing.T) {
	pts := trainingRun(12)
	for i := range pts {
		share := 0.3 + 0.04*float64(i)
		if i == 4 {
			share = math.NaN() // an epoch without a known share is skipped
		}
		pts[i].Discovery = &DiscoveryPoint{PartShare: share, PScore: []int{0, 1, 2, 3, 4 + i, 5, 6, 1, 0, 0}}
	}
	path := filepath.Join(t.TempDir(), "training.png")
	if err := PlotTraining(path, pts); err != nil {
		t.Fatal(err)
	}
	im := readPNG(t, path)
	if b := im.Bounds(); b.Dx() != 864 || b.Dy() != 1728 {
		t.Fatalf("plot is %v, want 864×1728", b)
	}
	for q := range 4 {
		if !hasColour(im, q*432, (q+1)*432) {
			t.Errorf("panel %d holds no coloured pixel", q+1)
		}
	}
}

func TestPlotPanels(t *testing.T) {
	dir := t.TempDir()
	panels := []Panel{
		{Title: "lines", Series: []Series{{Name: "a", X: []float64{0.4, 0.5, 0.6}, Y: []float64{1.2, math.NaN(), 1.1}}}},
		{Title: "bars", Bars: true, XTicks: map[float64]string{0: "hold", 1: "cut"}, Series: []Series{
			{Name: "ego", X: []float64{0, 1}, Y: []float64{0.3, 0.2}}, {Name: "exo", X: []float64{0, 1}, Y: []float64{0.1, 0.25}}}},
		{Title: "empty", Series: []Series{{Name: "nan", X: []float64{1}, Y: []float64{math.NaN()}}}},
	}
	path := filepath.Join(dir, "p.png")
	if err := PlotPanels(path, panels, 2); err != nil {
		t.Fatal(err)
	}
	if b := readPNG(t, path).Bounds(); b.Dx() != 864 || b.Dy() != 672 {
		t.Errorf("2×2 grid of 4.5×3.5 in panels is %v, want 864×672", b)
	}
	for _, tc := range []struct {
		name   string
		panels []Panel
		want   string
	}{
		{"no panels", nil, "no panels"},
		{"unequal series", []Panel{{Title: "t", Series: []Series{{Name: "s", X: []float64{1, 2}, Y: []float64{1}}}}}, "2 x values, 1 y values"},
	} {
		err := PlotPanels(filepath.Join(dir, "bad.png"), tc.panels, 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
