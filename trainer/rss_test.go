package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
)

// rssGrowthLimit is the bound on resident memory growth after warm-up.
const rssGrowthLimit = 0.02

// rssBytes is the process's resident set size (/proc/self/statm).
func rssBytes(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// rssRecorder samples the RSS after every training step, with glibc's and Go's counts.
type rssRecorder struct {
	recorder
	t     testing.TB
	rss   []int64
	live  []int64 // bytes of live tensors (torch.LiveBytes)
	mall  []torch.MallocStats
	goSys []int64 // Go's memory from the OS, less what it released
}

func (r *rssRecorder) Step(s StepStats) {
	// Go's own heap is returned first, so that what remains is libtorch's and the C code's.
	debug.FreeOSMemory()
	r.rss = append(r.rss, rssBytes(r.t))
	r.live = append(r.live, torch.LiveBytes())
	m, _ := torch.ReadMallocStats()
	r.mall = append(r.mall, m)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.goSys = append(r.goSys, int64(ms.Sys-ms.HeapReleased))
	r.recorder.Step(s)
}

// breakdown says where the memory is at step i (0-based).
func (r *rssRecorder) breakdown(i int) string {
	m := r.mall[i]
	return fmt.Sprintf("step %d: RSS %.1f MB; live tensors %.1f MB; malloc arenas %.1f MB (%.1f in use, %.1f free), mmapped %.1f MB; Go %.1f MB",
		i+1, float64(r.rss[i])/1e6, float64(r.live[i])/1e6, float64(m.Arena)/1e6, float64(m.InUse)/1e6, float64(m.Free)/1e6, float64(m.Mmapped)/1e6, float64(r.goSys[i])/1e6)
}

// rssRun trains c for steps steps (c.MaxSteps per epoch, as many epochs as needed, with their
// evaluations and checkpoints) and returns what it sampled after each step.
func rssRun(t testing.TB, c Config, steps int) *rssRecorder {
	t.Helper()
	if c.MaxSteps <= 0 {
		t.Fatal("rssRun needs max_steps_per_epoch")
	}
	c.Epochs = (steps + c.MaxSteps - 1) / c.MaxSteps
	r := &rssRecorder{t: t}
	if err := Run(context.Background(), c, false, r); err != nil {
		t.Fatal(err)
	}
	w := max(len(r.rss)/5, 10)
	t.Logf("after warm-up: %s", r.breakdown(w))
	t.Logf("at the end:    %s", r.breakdown(len(r.rss)-1))
	return r
}

// rssGrowth compares the medians of the ten steps after warm-up (the first fifth of the run, at
// least 10 steps) and of the last tenth of the steps: of the RSS itself, and of the RSS less the
// live tensors' bytes (the loader's prefetched batches come and go with its queue; what the
// issue is about is the native memory beyond the tensors), both relative to the RSS after
// warm-up.
func (r *rssRecorder) rssGrowth() (warm, end int64, growth, native float64) {
	med := func(xs []int64) int64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	n := len(r.rss)
	w := max(n/5, 10)
	tail := max(n/10, 5)
	nat := make([]int64, n)
	for i := range nat {
		nat[i] = r.rss[i] - r.live[i]
	}
	warm, end = med(r.rss[w:min(w+10, n)]), med(r.rss[n-tail:])
	nw, ne := med(nat[w:min(w+10, n)]), med(nat[n-tail:])
	return warm, end, float64(end-warm) / float64(warm), float64(ne-nw) / float64(warm)
}

// TestTrainingRSSFlat is the short form of the resident-memory check: over 42 steps of a small
// run (112² crops, batch 4: activations of 0.1–2 MiB, above glibc's initial mmap threshold, as
// the demo's are) the native memory beyond the live tensors must not grow by 2 % of the RSS
// after warm-up (and the RSS itself, which also moves with the loader's queue, not by 4 %).
// Without torch's fixed malloc threshold (AFFGD_MALLOC_DYNAMIC=1) the same run starts ≈ 50 % higher
// and usually grows by more, though on a loaded machine the 42-step growth scatters by ±1.5
// points either way (docs/BENCHMARKS.md, "Resident memory"); `make rss-long` is the long form. AFFGD_RSS_FLAT_STEPS=N runs N steps instead of 42.
//
// It is not part of `make test`: on this project's shared 2-core machines the growth it measures
// at the fixed threshold scattered from +0.7 % to +3.3 % between identical runs (docs/BENCHMARKS.md,
// "Resident memory"), so in CI it would fail at random. `make rss-short` (AFFGD_RSS_FLAT=1) runs it.
func TestTrainingRSSFlat(t *testing.T) {
	if os.Getenv("AFFGD_RSS_FLAT") == "" {
		t.Skip("set AFFGD_RSS_FLAT=1 (make rss-short): its measurement is too noisy for CI on a shared machine")
	}
	if !torch.MallocThresholdFixed() {
		t.Logf("glibc's malloc threshold is not fixed in this process (environment or libc)")
	}
	s := smallSynth(t)
	c := smallConfig(t, s)
	c.ResizeSize, c.CropSize, c.BatchSize, c.MaxSteps, c.TestLimit = 128, 112, 4, 6, 2
	steps := 42
	if v := os.Getenv("AFFGD_RSS_FLAT_STEPS"); v != "" { // longer runs, to compare malloc settings
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			t.Fatalf("AFFGD_RSS_FLAT_STEPS=%q: want a whole number of steps, at least 20", v)
		}
		steps = n
	}
	r := rssRun(t, c, steps)
	warm, end, g, native := r.rssGrowth()
	t.Logf("RSS after warm-up %.1f MB, at the end %.1f MB (%+.2f %%; beyond the live tensors %+.2f %%), max %.1f MB over %d steps",
		float64(warm)/1e6, float64(end)/1e6, 100*g, 100*native, float64(slices.Max(r.rss))/1e6, len(r.rss))
	if native >= rssGrowthLimit {
		t.Errorf("native memory beyond the live tensors grows by %.2f %% of the RSS after warm-up (limit %.0f %%)", 100*native, 100*rssGrowthLimit)
	}
	if g >= 2*rssGrowthLimit {
		t.Errorf("resident memory grows by %.2f %% after warm-up: %.1f MB → %.1f MB", 100*g, float64(warm)/1e6, float64(end)/1e6)
	}
}

// TestTrainingRSSLong is the long form, run by `make rss-long` with AFFGD_RSS_LONG=DIR: 1,000
// steps at the demo's settings (tiny backbones, batch 8, 224² crops) and 100 steps at full size
// (random ViT-S/16 DINO and ViT-B/16 CLIP, batch 8, 224²), each asserted to grow by < 2 % after
// warm-up; writes DIR/rss_<name>.csv and DIR/rss_<name>.png. AFFGD_RSS_STEPS=demo:N,full:M
// changes the step counts.
func TestTrainingRSSLong(t *testing.T) {
	dir := os.Getenv("AFFGD_RSS_LONG")
	if dir == "" {
		t.Skip("set AFFGD_RSS_LONG=DIR (make rss-long)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	steps := map[string]int{"demo": 1000, "full": 100}
	for _, kv := range strings.Split(os.Getenv("AFFGD_RSS_STEPS"), ",") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 20 {
				t.Fatalf("AFFGD_RSS_STEPS %q: want name:N with N ≥ 20", kv)
			}
			steps[k] = n
		}
	}
	s := smallSynth(t)
	for _, name := range []string{"demo", "full"} {
		n, ok := steps[name]
		if !ok || n == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			c.DataRoot, c.DINO, c.CLIP, c.Vocab = s.DataRoot, s.DINO, s.CLIP, s.Vocab
			c.OutDir = t.TempDir()
			c.MaxSteps, c.TestLimit = 6, 2
			if name == "full" {
				w := t.TempDir()
				c.DINO, c.CLIP = filepath.Join(w, "dino_vits16.pth"), filepath.Join(w, "clip_vitb16.pt")
				if err := dino.WriteRandom(c.DINO, dino.ViTS16(), 1); err != nil {
					t.Fatal(err)
				}
				if err := clip.WriteRandom(c.CLIP, clip.ViTB16(), 2, clip.FormatTorchScript); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			r := rssRun(t, c, n)
			rss := r.rss
			secs := time.Since(start).Seconds()
			warm, end, g, native := r.rssGrowth()
			summary := fmt.Sprintf("%s: %d steps (batch %d, %d² crops) in %.0f s: RSS after warm-up %.1f MB, at the end %.1f MB (%+.2f %%; beyond the live tensors %+.2f %%), max %.1f MB; glibc mmap threshold fixed: %v",
				name, len(rss), c.BatchSize, c.CropSize, secs, float64(warm)/1e6, float64(end)/1e6, 100*g, 100*native, float64(slices.Max(rss))/1e6, torch.MallocThresholdFixed())
			t.Log(summary)
			var csv strings.Builder
			csv.WriteString("step,rss_mb,live_tensors_mb\n")
			for i, v := range rss {
				fmt.Fprintf(&csv, "%d,%.3f,%.3f\n", i+1, float64(v)/1e6, float64(r.live[i])/1e6)
			}
			if err := os.WriteFile(filepath.Join(dir, "rss_"+name+".csv"), []byte(csv.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "rss_"+name+".txt"), []byte(summary+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := plotRSS(filepath.Join(dir, "rss_"+name+".png"), summary, rss, r.live); err != nil {
				t.Fatal(err)
			}
			if g >= rssGrowthLimit || native >= rssGrowthLimit {
				t.Errorf("resident memory grows by %.2f %% after warm-up, %.2f %% beyond the live tensors (limit %.0f %%)", 100*g, 100*native, 100*rssGrowthLimit)
			}
		})
	}
}

// plotRSS draws the RSS and the live tensors' bytes per step.
func plotRSS(path, title string, rss, live []int64) error {
	p := plot.New()
	if i := strings.Index(title, " in "); i > 0 {
		title = title[:i]
	}
	p.Title.Text = "resident memory per training step — " + title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "MB"
	for _, series := range []struct {
		name string
		v    []int64
	}{{"RSS", rss}, {"live tensors", live}} {
		pts := make(plotter.XYs, len(series.v))
		for i, v := range series.v {
			pts[i] = plotter.XY{X: float64(i + 1), Y: float64(v) / 1e6}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		if series.name != "RSS" {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l)
		p.Legend.Add(series.name, l)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	p.Y.Max = math.Max(p.Y.Max, float64(slices.Max(rss))/1e6*1.1)
	return p.Save(9*vg.Inch, 4*vg.Inch, path)
}
