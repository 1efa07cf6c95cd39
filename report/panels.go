package report

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one named line of a [Panel]: points (X[i], Y[i]); NaN and infinite values are
// skipped.
type Series struct {
	Name string
	X, Y []float64
}

// Panel is one chart of [PlotPanels]: lines with markers, or with Bars a grouped bar chart whose
// X values are bar positions.
type Panel struct {
	Title, XLabel, YLabel string
	Series                []Series
	// XTicks, when set, labels the x positions (categorical axes: the values of a swept key).
	XTicks map[float64]string
	Bars   bool
}

// PlotPanels writes a PNG with the panels on a grid of cols columns (each panel 4.5×3.5 inches at
// 96 dpi), atomically. A panel without any finite value says so in its title. It is an error to
// give no panels or series of unequal X and Y lengths.
func PlotPanels(path string, panels []Panel, cols int) (err error) {
	if len(panels) == 0 {
		return fmt.Errorf("report: plot %s: no panels", path)
	}
	cols = max(1, min(cols, len(panels)))
	rows := (len(panels) + cols - 1) / cols
	defer func() {
		if r := recover(); r != nil { // gonum/plot panics on a few inputs it cannot lay out
			err = fmt.Errorf("report: plot %s: drawing failed: %v", path, r)
		}
	}()
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
	}
	for i, pn := range panels {
		p, err := makePanel(pn)
		if err != nil {
			return fmt.Errorf("report: plot %s: panel %q: %w", path, pn.Title, err)
		}
		grid[i/cols][i%cols] = p
	}
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(cols)*4.5*vg.Inch, vg.Length(rows)*3.5*vg.Inch), vgimg.UseDPI(plotDPI))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(14), PadY: vg.Points(18),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16)}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	err = writeAtomic(path, func(w io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("report: plot %s: %w", path, err)
	}
	return nil
}

// makePanel draws one panel.
func makePanel(pn Panel) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = pn.Title, pn.XLabel, pn.YLabel
	p.Y.Tick.Marker = valueTicks{}
	if pn.XTicks != nil {
		p.X.Tick.Marker = labelTicks(pn.XTicks)
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	n := 0
	xlo, xhi := math.Inf(1), math.Inf(-1)
	width := vg.Points(8)
	if len(pn.Series) > 0 {
		width = vg.Points(math.Max(2, 36/float64(len(pn.Series))))
	}
	for i, s := range pn.Series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("series %q: %d x values, %d y values", s.Name, len(s.X), len(s.Y))
		}
		var xy plotter.XYs
		for j := range s.X {
			if finite(s.X[j]) && finite(s.Y[j]) {
				xy = append(xy, plotter.XY{X: s.X[j], Y: s.Y[j]})
				xlo, xhi = math.Min(xlo, s.X[j]), math.Max(xhi, s.X[j])
			}
		}
		if len(xy) == 0 {
			continue
		}
		if pn.Bars {
			vals := make(plotter.Values, len(xy))
			for j := range xy {
				vals[j] = xy[j].Y
			}
			bars, err := plotter.NewBarChart(vals, width)
			if err != nil {
				return nil, err
			}
			bars.XMin = xy[0].X
			bars.Offset = width * vg.Length(float64(i)-float64(len(pn.Series)-1)/2)
			bars.Color = plotutil.Color(i)
			bars.LineStyle.Width = 0
			p.Add(bars)
			p.Legend.Add(s.Name, bars)
		} else {
			line, marks, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			line.Color, line.Width, line.Dashes = plotutil.Color(i), vg.Points(1.5), plotutil.Dashes(i/7)
			marks.Color, marks.Shape, marks.Radius = plotutil.Color(i), plotutil.Shape(i), vg.Points(2.5)
			p.Add(line, marks)
			if s.Name != "" {
				p.Legend.Add(s.Name, line, marks)
			}
		}
		n++
	}
	if n == 0 {
		p.Title.Text += " — no finite values"
	} else if pn.Bars { // whole bars: half a position either side
		p.X.Min, p.X.Max = xlo-0.5, xhi+0.5
	} else if xhi > xlo {
		pad := 0.05 * (xhi - xlo)
		p.X.Min, p.X.Max = xlo-pad, xhi+pad
	}
	return p, nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// labelTicks labels the given x positions (and nothing else).
type labelTicks map[float64]string

// Ticks implements plot.Ticker.
func (l labelTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for v, s := range l {
		if v >= lo && v <= hi {
			ts = append(ts, plot.Tick{Value: v, Label: s})
		}
	}
	return ts
}
