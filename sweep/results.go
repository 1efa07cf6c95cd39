package sweep

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/report"
)

// Maps and Metrics are the result columns: each map's mean KLD, SIM and NSS.
var (
	Maps    = []string{"cam", "ree", "rem"}
	Metrics = []string{"kld", "sim", "nss"}
)

// Row is one point's results, read from its metrics.jsonl.
type Row struct {
	Point     Point
	Status    Status // Finished, Partial or New
	Epochs    int    // epochs logged (the last one's number)
	BestEpoch int    // the epoch of lowest ree KLD (best.pth), 0 when none
	Best      map[string]report.Figures
	Last      map[string]report.Figures
}

// Collect reads every point's results from its run folder.
func (p *Plan) Collect() []Row {
	rows := make([]Row, len(p.Points))
	for i, pt := range p.Points {
		r := Row{Point: pt, Status: p.State(pt)}
		logs, _ := readLog(filepath.Join(p.RunDir(pt), "metrics.jsonl"))
		for _, l := range logs {
			if l.Eval == nil {
				continue
			}
			r.Epochs, r.Last = l.Epoch, l.Eval.Overall
			if l.Best {
				r.BestEpoch, r.Best = l.Epoch, l.Eval.Overall
			}
		}
		rows[i] = r
	}
	return rows
}

func metric(f report.Figures, m string) float64 {
	switch m {
	case "kld":
		return f.KLD
	case "sim":
		return f.SIM
	default:
		return f.NSS
	}
}

// csvFloat writes a figure exactly (shortest round-trip form); a missing one is empty.
func csvFloat(figs map[string]report.Figures, mp, m string) string {
	f, ok := figs[mp]
	if !ok {
		return ""
	}
	v := metric(f, m)
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// CSVHeader is sweep.csv's header: point, the swept keys, status, epochs, best_epoch, then
// best_<map>_<metric> and last_<map>_<metric> for cam, ree, rem and kld, sim, nss.
func (p *Plan) CSVHeader() []string {
	h := []string{"point"}
	for _, a := range p.Axes {
		h = append(h, a.Key)
	}
	h = append(h, "status", "epochs", "best_epoch")
	for _, which := range []string{"best", "last"} {
		for _, mp := range Maps {
			for _, m := range Metrics {
				h = append(h, which+"_"+mp+"_"+m)
			}
		}
	}
	return h
}

// CSV renders the rows as sweep.csv (figures in full precision, as in each metrics.jsonl).
func (p *Plan) CSV(rows []Row) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(p.CSVHeader())
	for _, r := range rows {
		rec := append([]string{r.Point.Name}, r.Point.Values...)
		rec = append(rec, string(r.Status), strconv.Itoa(r.Epochs), strconv.Itoa(r.BestEpoch))
		for _, figs := range []map[string]report.Figures{r.Best, r.Last} {
			for _, mp := range Maps {
				for _, m := range Metrics {
					rec = append(rec, csvFloat(figs, mp, m))
				}
			}
		}
		_ = w.Write(rec)
	}
	w.Flush()
	return b.Bytes()
}

// Markdown renders the rows as sweep.md: the best epoch's and the last epoch's figures.
func (p *Plan) Markdown(rows []Row) []byte {
	var b strings.Builder
	keys := make([]string, len(p.Axes))
	for i, a := range p.Axes {
		keys[i] = "`" + a.Key + "`"
	}
	fmt.Fprintf(&b, "# Sweep over %s (%d points)\n\n", strings.Join(keys, " × "), len(rows))
	fmt.Fprintf(&b, "Base configuration: the `%s` of each point with the swept keys changed; runs in `%s/`.\n", ConfigsDir, RunsDir)
	for _, t := range []struct {
		title string
		pick  func(Row) (int, map[string]report.Figures)
	}{
		{"Best epoch (lowest ree KLD, the epoch of best.pth)", func(r Row) (int, map[string]report.Figures) { return r.BestEpoch, r.Best }},
		{"Last epoch", func(r Row) (int, map[string]report.Figures) { return r.Epochs, r.Last }},
	} {
		fmt.Fprintf(&b, "\n## %s\n\n|", t.title)
		for _, a := range p.Axes {
			fmt.Fprintf(&b, " %s |", a.Key)
		}
		b.WriteString(" status | epoch |")
		for _, mp := range Maps {
			fmt.Fprintf(&b, " %s KLD ↓ | %s SIM ↑ | %s NSS ↑ |", mp, mp, mp)
		}
		b.WriteString("\n|")
		for range len(p.Axes) + 2 + 3*len(Maps) {
			b.WriteString(" --- |")
		}
		b.WriteString("\n")
		for _, r := range rows {
			ep, figs := t.pick(r)
			b.WriteString("|")
			for _, v := range r.Point.Values {
				fmt.Fprintf(&b, " %s |", v)
			}
			epoch := "—"
			if ep > 0 {
				epoch = strconv.Itoa(ep)
			}
			fmt.Fprintf(&b, " %s | %s |", r.Status, epoch)
			for _, mp := range Maps {
				for _, m := range Metrics {
					f, ok := figs[mp]
					if !ok {
						b.WriteString(" — |")
						continue
					}
					fmt.Fprintf(&b, " %.4f |", metric(f, m))
				}
			}
			b.WriteString("\n")
		}
	}
	return []byte(b.String())
}

// Plot draws sweep.png: one panel per swept key, the best epoch's KLD against that key's values.
// With one key the panel has a line per map (cam, ree, rem); with several, a line of ree KLD per
// combination of the other keys' values. Non-numeric values are placed in order, labelled.
func (p *Plan) Plot(path string, rows []Row) error {
	var panels []report.Panel
	for ai, a := range p.Axes {
		xs, ticks := axisPositions(a)
		pn := report.Panel{Title: "best-epoch KLD against " + a.Key, XLabel: a.Key, YLabel: "KLD (lower is better)", XTicks: ticks}
		if len(p.Axes) == 1 {
			for _, mp := range Maps {
				s := report.Series{Name: mp}
				for _, r := range rows {
					s.X = append(s.X, xs[r.Point.Values[0]])
					s.Y = append(s.Y, figure(r.Best, mp))
				}
				pn.Series = append(pn.Series, s)
			}
		} else {
			groups := map[string]*report.Series{}
			var order []string
			for _, r := range rows {
				var other []string
				for j, b := range p.Axes {
					if j != ai {
						other = append(other, b.Key+"="+r.Point.Values[j])
					}
				}
				name := "ree, " + strings.Join(other, " ")
				s, ok := groups[name]
				if !ok {
					s = &report.Series{Name: name}
					groups[name] = s
					order = append(order, name)
				}
				s.X = append(s.X, xs[r.Point.Values[ai]])
				s.Y = append(s.Y, figure(r.Best, "ree"))
			}
			for _, n := range order {
				pn.Series = append(pn.Series, *groups[n])
			}
		}
		panels = append(panels, pn)
	}
	return report.PlotPanels(path, panels, 2)
}

func figure(figs map[string]report.Figures, mp string) float64 {
	if f, ok := figs[mp]; ok {
		return f.KLD
	}
	return math.NaN()
}

// axisPositions places an axis's values on x: at their numbers when every value is one (with no
// labels: the default ticks), else at 0, 1, 2, ... labelled with the values.
func axisPositions(a Axis) (map[string]float64, map[float64]string) {
	pos := map[string]float64{}
	numeric := true
	for _, v := range a.Values {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			numeric = false
			break
		}
		pos[v] = x
	}
	if numeric {
		return pos, nil
	}
	ticks := map[float64]string{}
	for i, v := range a.Values {
		pos[v] = float64(i)
		ticks[float64(i)] = v
	}
	return pos, ticks
}

// WriteResults writes sweep.csv, sweep.md and sweep.png from the points' run folders and returns
// the rows.
func (p *Plan) WriteResults() ([]Row, error) {
	rows := p.Collect()
	if err := atomicfile.WriteBytes(filepath.Join(p.Dir, CSVFile), p.CSV(rows)); err != nil {
		return rows, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(p.Dir, TableFile), p.Markdown(rows)); err != nil {
		return rows, err
	}
	return rows, p.Plot(filepath.Join(p.Dir, PlotFile), rows)
}
