package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// EpochPoint is one training epoch's figures for PlotTraining.
type EpochPoint struct {
	Epoch  int                // epoch number as shown on the x axis (1-based in affgd's logs)
	Losses map[string]float64 // epoch means of L_ce_ego, L_ce_exo, L_pix, L_proto and the total "loss"
	KLD    map[string]float64 // the epoch's test KLD of the maps cam, ree and rem
	// Discovery, when set, is the epoch's part discovery: PlotTraining then adds two panels.
	Discovery *DiscoveryPoint
}

// DiscoveryPoint is one epoch's part-discovery outcome: the share of samples at part level and a
// histogram of the clustered samples' best reliability p over equal bins of [0, 1].
type DiscoveryPoint struct {
	PartShare float64 // NaN when unknown
	PScore    []int   // counts per bin
}

// lossOrder and kldOrder are the series drawn first, in this order; other keys follow sorted.
var (
	lossOrder = []string{"L_ce_ego", "L_ce_exo", "L_pix", "L_proto", "loss"}
	kldOrder  = []string{"cam", "ree", "rem"}
)

// Plot geometry: a 9×9 inch image at 96 dpi (864×864 pixels), two panels stacked.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 9 * vg.Inch
	plotDPI    = 96
)

// PlotTraining writes a PNG image to path with two panels, one above the other: the epoch means
// of the training losses per epoch, and the test KLD (lower is better) of each map per epoch.
// Each series is a line with a marker per epoch, named in the panel's legend; both panels have a
// title, axis labels and tick labels (whole epochs on the x axis). NaN and infinite values are
// skipped (the line joins the points on either side), a series without any finite value is left
// out, and a panel with nothing to draw says so in its title. One epoch gives single markers.
// The file is written atomically. It is an error to give no epochs, or two points with the same
// epoch number.
func PlotTraining(path string, epochs []EpochPoint) (err error) {
	if len(epochs) == 0 {
		return fmt.Errorf("report: plot training %s: no epochs to plot", path)
	}
	pts := slices.Clone(epochs)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Epoch < pts[j].Epoch })
	for i := 1; i < len(pts); i++ {
		if pts[i].Epoch == pts[i-1].Epoch {
			return fmt.Errorf("report: plot training %s: epoch %d appears twice", path, pts[i].Epoch)
		}
	}
	defer func() {
		// gonum/plot panics on a few inputs it cannot lay out; no panic may reach a user.
		if r := recover(); r != nil {
			err = fmt.Errorf("report: plot training %s: drawing failed: %v", path, r)
		}
	}()
	lo, hi := float64(pts[0].Epoch), float64(pts[len(pts)-1].Epoch)

	losses, nLoss, err := panel(pts, func(p EpochPoint) map[string]float64 { return p.Losses }, lossOrder, lo, hi)
	if err != nil {
		return fmt.Errorf("report: plot training %s: losses: %w", path, err)
	}
	losses.Title.Text = "Training losses (epoch means)"
	losses.Y.Label.Text = "loss"

	kld, nKLD, err := panel(pts, func(p EpochPoint) map[string]float64 { return p.KLD }, kldOrder, lo, hi)
	if err != nil {
		return fmt.Errorf("report: plot training %s: KLD: %w", path, err)
	}
	kld.Title.Text = "Test KLD per epoch (lower is better)"
	kld.Y.Label.Text = "KLD"

	if nLoss == 0 {
		losses.Title.Text += " — no finite values"
	}
	if nKLD == 0 {
		kld.Title.Text += " — no finite values"
	}

	grid := [][]*plot.Plot{{losses}, {kld}}
	if extra, err := discoveryPanels(pts); err != nil {
		return fmt.Errorf("report: plot training %s: part discovery: %w", path, err)
	} else if extra != nil {
		grid = append(grid, extra...)
	}
	img := vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight*vg.Length(len(grid))/2), vgimg.UseDPI(plotDPI))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(grid), Cols: 1, PadX: vg.Points(12), PadY: vg.Points(18),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16)}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		grid[r][0].Draw(canvases[r][0])
	}
	err = writeAtomic(path, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("report: plot training %s: %w", path, err)
	}
	return nil
}

// discoveryPanels are the part-level share per epoch and the p-score histogram of each epoch
// (as fractions of its clustered samples), or nil when no point has part-discovery figures.
func discoveryPanels(pts []EpochPoint) ([][]*plot.Plot, error) {
	share := Series{Name: "part-level share"}
	var hists []Series
	for _, pt := range pts {
		d := pt.Discovery
		if d == nil {
			continue
		}
		share.X, share.Y = append(share.X, float64(pt.Epoch)), append(share.Y, d.PartShare)
		total := 0
		for _, c := range d.PScore {
			total += c
		}
		h := Series{Name: fmt.Sprintf("epoch %d", pt.Epoch)}
		for i, c := range d.PScore {
			h.X = append(h.X, (float64(i)+0.5)/float64(len(d.PScore)))
			h.Y = append(h.Y, float64(c)/float64(max(total, 1)))
		}
		hists = append(hists, h)
	}
	if len(share.X) == 0 {
		return nil, nil
	}
	if len(hists) > 8 { // the first, the last and evenly spaced epochs between
		var keep []Series
		for i := range 8 {
			keep = append(keep, hists[i*(len(hists)-1)/7])
		}
		hists = keep
	}
	a, err := makePanel(Panel{Title: "Part-level samples per epoch (share of the epoch's samples)", XLabel: "epoch", YLabel: "share", Series: []Series{share}})
	if err != nil {
		return nil, err
	}
	a.X.Tick.Marker = epochTicks{}
	a.X.Min, a.X.Max = float64(pts[0].Epoch)-0.5, float64(pts[len(pts)-1].Epoch)+0.5
	b, err := makePanel(Panel{Title: "Best reliability p of the clustered samples (α compares with it)", XLabel: "p (bin centre)", YLabel: "share of clustered samples", Series: hists})
	if err != nil {
		return nil, err
	}
	return [][]*plot.Plot{{a}, {b}}, nil
}

// panel makes one panel: a line-and-marker series per key of the maps field picks, over x in
// [lo, hi]; it returns the number of series drawn.
func panel(pts []EpochPoint, field func(EpochPoint) map[string]float64, order []string, lo, hi float64) (*plot.Plot, int, error) {
	p := plot.New()
	p.X.Label.Text = "epoch"
	p.X.Tick.Marker = epochTicks{}
	p.X.Min, p.X.Max = lo-0.5, hi+0.5
	p.Y.Tick.Marker = valueTicks{}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())

	keys := seriesKeys(pts, field, order)
	n := 0
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for i, k := range keys {
		var xy plotter.XYs
		for _, pt := range pts {
			v, ok := field(pt)[k]
			if ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
				xy = append(xy, plotter.XY{X: float64(pt.Epoch), Y: v})
				ylo, yhi = math.Min(ylo, v), math.Max(yhi, v)
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, marks, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, 0, fmt.Errorf("series %s: %w", k, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i / 7)
		marks.Color = plotutil.Color(i)
		marks.Shape = plotutil.Shape(i)
		marks.Radius = vg.Points(3)
		if len(pts) > 40 { // smaller markers where they would crowd
			marks.Radius = vg.Points(1.5)
		}
		p.Add(line, marks)
		p.Legend.Add(k, line, marks)
		n++
	}
	if n > 0 { // a margin so that no marker sits on the frame
		pad := 0.06 * (yhi - ylo)
		if pad == 0 {
			pad = 0.1 * math.Max(math.Abs(yhi), 1)
		}
		p.Y.Min, p.Y.Max = ylo-pad, yhi+pad
	}
	return p, n, nil
}

// seriesKeys lists the keys present in any point: those of order first, in that order, then the
// others sorted.
func seriesKeys(pts []EpochPoint, field func(EpochPoint) map[string]float64, order []string) []string {
	present := map[string]bool{}
	for _, pt := range pts {
		for k := range field(pt) {
			present[k] = true
		}
	}
	var keys, rest []string
	for _, k := range order {
		if present[k] {
			keys = append(keys, k)
			delete(present, k)
		}
	}
	for k := range present {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(keys, rest...)
}

// epochTicks marks whole epochs on the x axis: every one when few, else a round step (1, 2, 5,
// 10, 20, 50, ...) giving at most about ten labels, with minor ticks between.
type epochTicks struct{}

// Ticks implements plot.Ticker.
func (epochTicks) Ticks(lo, hi float64) []plot.Tick {
	first, last := math.Ceil(lo), math.Floor(hi)
	if last < first {
		return nil
	}
	span := last - first
	step := 1.0
	for mag := 1.0; span/step > 10; mag *= 10 {
		for _, m := range []float64{1, 2, 5, 10} {
			step = m * mag
			if span/step <= 10 {
				break
			}
		}
	}
	var ticks []plot.Tick
	for v := first; v <= last; v++ {
		t := plot.Tick{Value: v}
		if math.Mod(v, step) == 0 {
			t.Label = strconv.FormatFloat(v, 'f', 0, 64)
		} else if step >= 10 && math.Mod(v, step/5) != 0 {
			continue // minor ticks only at fifths of a large step
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// valueTicks is gonum's default ticker with labels printed to as many decimals as the step
// between labelled ticks needs (the default may print 1.45 and 1.5 both as "1.5").
type valueTicks struct{}

// Ticks implements plot.Ticker.
func (valueTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	step := math.Inf(1)
	prev := math.NaN()
	for _, t := range ticks {
		if t.Label == "" {
			continue
		}
		if !math.IsNaN(prev) {
			step = math.Min(step, t.Value-prev)
		}
		prev = t.Value
	}
	decimals := 0
	if step > 0 && !math.IsInf(step, 0) {
		decimals = max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	}
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', decimals, 64)
		}
	}
	return ticks
}
