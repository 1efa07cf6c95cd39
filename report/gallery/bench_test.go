package gallery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/browser"
	"github.com/affgd/affgd/torch"
)

// BenchmarkAdd draws evaluated images into a report, as eval --report does per test image: a
// 480×640 photo (smooth, so its JPEGs are photo-sized, not noise-sized), its GT and three 14×14
// maps, as the grid strip and the enlarged strip.
func BenchmarkAdd(b *testing.B) {
	const H, W = 480, 640
	var img data.Image
	var gt *torch.Tensor
	maps := map[string]*torch.Tensor{}
	err := torch.WithScope(func(s *torch.Scope) {
		y := torch.Arange(0, H, 1, torch.Float32).Reshape(H, 1, 1)
		x := torch.Arange(0, W, 1, torch.Float32).Reshape(1, W, 1)
		c := torch.FromSlice([]float32{0.011, 0.017, 0.023}).Reshape(1, 1, 3)
		rgb := y.Mul(c).Add(x.Mul(c.MulScalar(0.7))).Sin().AddScalar(1).MulScalar(127).ToDType(torch.Uint8).Contiguous()
		img = data.Image{W: W, H: H, Pix: rgb.Bytes()}
		gt = torch.Escape(x.Squeeze(2).Sub(y.Squeeze(2)).Abs().LtScalar(60).ToDType(torch.Uint8).MulScalar(255))
		for _, m := range []string{"cam", "ree", "rem"} {
			maps[m] = torch.Escape(torch.Rand([]int64{14, 14}, nil))
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	w, err := Create(filepath.Join(b.TempDir(), "r"), Options{GT: true})
	if err != nil {
		b.Fatal(err)
	}
	sc := map[string]data.Scores{"cam": {KLD: 1}, "ree": {KLD: 1}, "rem": {KLD: 1}}
	b.ResetTimer()
	for range b.N {
		if err := w.Add(Item{Name: "x.jpg", Class: "hold", Scores: sc}, img, gt, maps); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.stop(); err != nil { // the queued images drawn too: the time is the drawing's
		b.Fatal(err)
	}
}

// BenchmarkOpenReport opens the report in $AFFGD_REPORT_DIR (scripts/bench-report.sh writes one
// for 1,680 synthetic test images) in headless Chromium from its file URL and reports the page's
// own timings: ms-load (navigation start to the end of the load event, the thumbnails in view
// included), ms-reorder (switching the grids to another map's order: every class grid re-sorted
// and the worst section rebuilt, with the layout that follows), ms-sort (sorting the table by a
// column). It skips without $AFFGD_REPORT_DIR or Chromium.
func BenchmarkOpenReport(b *testing.B) {
	dir := os.Getenv("AFFGD_REPORT_DIR")
	if dir == "" {
		b.Skip("set AFFGD_REPORT_DIR to a report folder (scripts/bench-report.sh does)")
	}
	bin := browser.ForTest(b)
	br, err := browser.New(bin, browser.Options{Width: 1600, Height: 1000, Timeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	url := "file://" + filepath.Join(dir, IndexFile)
	if abs, err := filepath.Abs(dir); err == nil {
		url = "file://" + filepath.Join(abs, IndexFile)
	}
	var load, reorder, sortT float64
	n := 0
	for b.Loop() {
		if err := br.Open(url); err != nil {
			b.Fatal(err)
		}
		l, err := browser.Eval[float64](br, `(() => { const e = performance.getEntriesByType("navigation")[0]; return e.loadEventEnd - e.startTime; })()`)
		if err != nil {
			b.Fatal(err)
		}
		r, err := browser.Eval[float64](br, `(() => { const t = performance.now(); document.querySelector('#order input[value="cam"]').click(); document.body.offsetHeight; return performance.now() - t; })()`)
		if err != nil {
			b.Fatal(err)
		}
		s, err := browser.Eval[float64](br, `(() => { const t = performance.now(); document.querySelector('th[data-key="ree-kld"]').click(); document.body.offsetHeight; return performance.now() - t; })()`)
		if err != nil {
			b.Fatal(err)
		}
		load, reorder, sortT, n = load+l, reorder+r, sortT+s, n+1
	}
	if errs := br.Errors(); len(errs) > 0 {
		b.Errorf("console errors: %s", strings.Join(errs, "; "))
	}
	tiles, _ := browser.Eval[int](br, `document.querySelectorAll(".tile").length`)
	b.ReportMetric(load/float64(n), "ms-load")
	b.ReportMetric(reorder/float64(n), "ms-reorder")
	b.ReportMetric(sortT/float64(n), "ms-sort")
	b.ReportMetric(float64(tiles), "tiles")
	fmt.Fprintf(os.Stderr, "report %s: %d tiles\n", dir, tiles)
}
