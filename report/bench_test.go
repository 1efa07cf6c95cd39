package report

import (
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/torch"
)

// BenchmarkOverlay colours a 14×14 map over a 480×640 photo, as `affgd predict` does per map.
func BenchmarkOverlay(b *testing.B) {
	img := torch.Randint(0, 256, []int64{480, 640, 3}, nil, torch.Uint8)
	heat := torch.Rand([]int64{14, 14}, nil)
	defer img.Free()
	defer heat.Free()
	for b.Loop() {
		out, err := Overlay(img, heat, 0.5)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkWritePNG encodes a 480×640 RGB image.
func BenchmarkWritePNG(b *testing.B) {
	img := torch.Randint(0, 256, []int64{480, 640, 3}, nil, torch.Uint8)
	defer img.Free()
	path := filepath.Join(b.TempDir(), "x.png")
	for b.Loop() {
		if err := WritePNG(path, img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlotTraining draws a 15-epoch run, as `affgd train` does after each epoch.
func BenchmarkPlotTraining(b *testing.B) {
	pts := trainingRun(15)
	path := filepath.Join(b.TempDir(), "plot.png")
	for b.Loop() {
		if err := PlotTraining(path, pts); err != nil {
			b.Fatal(err)
		}
	}
}
