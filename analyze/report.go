package analyze

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/report"
)

// Files [Write] creates in its folder.
const (
	JSONFile       = "analysis.json"
	MarkdownFile   = "analysis.md"
	ActivationPlot = "activation.png" // (a)
	DiscoveryPlot  = "discovery.png"  // (b), train split
	ClustersPlot   = "clusters.png"   // (c), train split
)

// TableAlphas are the α columns of the markdown's part-discovery table (the paper's sweep).
var TableAlphas = []float64{0.4, 0.5, 0.6, 0.7, 0.8}

// Write writes the result's JSON, markdown and plots into dir and returns the files written.
func Write(dir string, r *Result) ([]string, error) {
	var files []string
	put := func(name string, b []byte) error {
		files = append(files, filepath.Join(dir, name))
		return atomicfile.WriteBytes(filepath.Join(dir, name), b)
	}
	js, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return nil, err
	}
	if err := put(JSONFile, append(js, '\n')); err != nil {
		return nil, err
	}
	if err := put(MarkdownFile, []byte(r.Markdown())); err != nil {
		return nil, err
	}
	plots := []struct {
		name   string
		panels []report.Panel
	}{{ActivationPlot, r.activationPanels()}}
	if r.Overall.Discovery != nil {
		plots = append(plots, struct {
			name   string
			panels []report.Panel
		}{DiscoveryPlot, r.discoveryPanels()}, struct {
			name   string
			panels []report.Panel
		}{ClustersPlot, r.clusterPanels()})
	}
	for _, p := range plots {
		path := filepath.Join(dir, p.name)
		if err := report.PlotPanels(path, p.panels, 2); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

func histSeries(name string, h []int64) report.Series {
	var total int64
	for _, c := range h {
		total += c
	}
	s := report.Series{Name: name}
	for i, c := range h {
		s.X = append(s.X, (float64(i)+0.5)/float64(len(h)))
		s.Y = append(s.Y, float64(c)/float64(max(total, 1)))
	}
	return s
}

// classTicks labels class positions 0, 1, ...
func (r *Result) classTicks() map[float64]string {
	t := map[float64]string{}
	for i, c := range r.Classes {
		t[float64(i)] = c.Name
	}
	return t
}

func (r *Result) perClass(name string, f func(*Class) float64) report.Series {
	s := report.Series{Name: name}
	for i, c := range r.Classes {
		s.X, s.Y = append(s.X, float64(i)), append(s.Y, f(c))
	}
	return s
}

func (r *Result) activationPanels() []report.Panel {
	o := r.Overall
	hist := report.Panel{Title: "Normalised CLIP affordance map, all classes", XLabel: "min-max normalised value (bin centre)", YLabel: "share of cells",
		Series: []report.Series{histSeries("ego", o.Ego.Hist)}}
	if o.Exo != nil {
		hist.Series = append(hist.Series, histSeries("exo", o.Exo.Hist))
	}
	hist.Series = append(hist.Series, report.Series{Name: fmt.Sprintf("γ2 = %g", r.Gamma2), X: []float64{r.Gamma2, r.Gamma2}, Y: []float64{0, maxY(hist.Series)}})
	above := report.Panel{Title: fmt.Sprintf("Share of cells above γ2 = %g per class", r.Gamma2), XLabel: "class", YLabel: "share", Bars: true, XTicks: r.classTicks(),
		Series: []report.Series{r.perClass("ego", func(c *Class) float64 { return c.Ego.AboveGamma2 })}}
	raw := report.Panel{Title: "Largest cosine to the affordance prompt per map (class mean)", XLabel: "class", YLabel: "cosine", Bars: true, XTicks: r.classTicks(),
		Series: []report.Series{r.perClass("ego", func(c *Class) float64 { return c.Ego.MaxRaw })}}
	panels := []report.Panel{hist, above, raw}
	if o.Exo != nil {
		panels[1].Series = append(panels[1].Series, r.perClass("exo", func(c *Class) float64 { return c.Exo.AboveGamma2 }))
		panels[2].Series = append(panels[2].Series, r.perClass("exo", func(c *Class) float64 { return c.Exo.MaxRaw }))
	} else {
		panels = append(panels, report.Panel{Title: "γ2 anchors on the GT part (vs all cells) per class", XLabel: "class", YLabel: "share of weight on the GT part", Bars: true, XTicks: r.classTicks(),
			Series: []report.Series{
				r.perClass("γ2 anchors", func(c *Class) float64 { return c.Ego.AnchorOnGT }),
				r.perClass("all cells", func(c *Class) float64 { return c.Ego.CellsOnGT }),
			}})
	}
	return panels
}

func maxY(ss []report.Series) float64 {
	m := 0.0
	for _, s := range ss {
		for _, y := range s.Y {
			if !math.IsNaN(y) {
				m = math.Max(m, y)
			}
		}
	}
	return m
}

func (r *Result) discoveryPanels() []report.Panel {
	d := r.Overall.Discovery
	// Candidate counts in at most 20 bins.
	hi := slices.Max(append([]int{1}, d.Candidates...))
	width := max(1, (hi+20)/20)
	counts := make([]float64, hi/width+1)
	for _, n := range d.Candidates {
		counts[n/width]++
	}
	cand := report.Series{Name: "samples"}
	for i, c := range counts {
		cand.X, cand.Y = append(cand.X, float64(i*width)), append(cand.Y, c)
	}
	cand.Name = fmt.Sprintf("samples (bins of %d)", width)
	kLine := report.Series{Name: fmt.Sprintf("K = %d", r.K), X: []float64{float64(r.K), float64(r.K)}, Y: []float64{0, maxY([]report.Series{cand})}}
	ph := make([]int64, ActBins)
	for _, p := range d.PScores {
		ph[min(int(p*ActBins), ActBins-1)]++
	}
	pscore := histSeries("clustered samples", ph)
	alphaLine := report.Series{Name: fmt.Sprintf("α = %g", r.Alpha), X: []float64{r.Alpha, r.Alpha}, Y: []float64{0, maxY([]report.Series{pscore})}}
	share := []report.Series{{Name: "overall", X: r.Alphas, Y: d.PartShare}}
	// The classes with the most samples (all are in the JSON and the markdown).
	cls := slices.Clone(r.Classes)
	sort.SliceStable(cls, func(i, j int) bool { return cls[i].Discovery.Samples > cls[j].Discovery.Samples })
	for _, c := range cls[:min(len(cls), 6)] {
		share = append(share, report.Series{Name: c.Name, X: r.Alphas, Y: c.Discovery.PartShare})
	}
	return []report.Panel{
		{Title: "Part-discovery candidates per sample", XLabel: "candidates", YLabel: "samples", Series: []report.Series{cand, kLine}},
		{Title: "Best reliability p of the clustered samples", XLabel: "p (bin centre)", YLabel: "share", Series: []report.Series{pscore, alphaLine}},
		{Title: "Part-level share as a function of α", XLabel: "α", YLabel: "share of samples at part level", Series: share},
		{Title: fmt.Sprintf("Samples with fewer than K = %d candidates per class", r.K), XLabel: "class", YLabel: "share", Bars: true, XTicks: r.classTicks(),
			Series: []report.Series{r.perClass("object level whatever α", func(c *Class) float64 {
				return float64(c.Discovery.Unclustered) / float64(max(c.Discovery.Samples, 1))
			})}},
	}
}

func (r *Result) clusterPanels() []report.Panel {
	empty := report.Series{Name: "overall"}
	part := report.Series{Name: "overall"}
	for _, k := range r.Overall.Clusters {
		empty.X, empty.Y = append(empty.X, float64(k.K)), append(empty.Y, k.EmptyShare)
		part.X, part.Y = append(part.X, float64(k.K)), append(part.Y, k.PartShare)
	}
	ticks := map[float64]string{}
	for _, k := range r.Overall.Clusters {
		ticks[float64(k.K)] = fmt.Sprint(k.K)
	}
	return []report.Panel{
		{Title: "Empty K-means clusters (share of the clustered samples' clusters)", XLabel: "K", YLabel: "share", XTicks: ticks, Series: []report.Series{empty}},
		{Title: fmt.Sprintf("Part-level samples at α = %g", r.Alpha), XLabel: "K", YLabel: "share", XTicks: ticks, Series: []report.Series{part}},
	}
}

func f4(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf("%.4f", x)
}

// Markdown renders the result as tables (analysis.md).
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# affgd analyze: %s split of %s (%d samples)\n\nγ1 = %g, γ2 = %g, α = %g, K = %d.\n", r.Split, r.Divide, r.Samples, r.Gamma1, r.Gamma2, r.Alpha, r.K)
	all := append([]*Class{r.Overall}, r.Classes...)
	b.WriteString("\n## (a) CLIP affordance-map response, egocentric vs exocentric\n\n")
	if r.Overall.Exo != nil {
		b.WriteString("Does CLIP respond more strongly to the afforded part in egocentric images than in exocentric ones (the premise of the pixel loss's γ2 anchors)? Above γ2: share of cells of the min-max normalised map; max: mean over maps of the largest cosine to the affordance prompt.\n\n")
		b.WriteString("| class | ego maps | exo maps | ego above γ2 | exo above γ2 | ego mean cos | exo mean cos | ego max cos | exo max cos |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, c := range all {
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s |\n", c.Name, c.Ego.Maps, c.Exo.Maps, f4(c.Ego.AboveGamma2), f4(c.Exo.AboveGamma2),
				f4(c.Ego.MeanRaw), f4(c.Exo.MeanRaw), f4(c.Ego.MaxRaw), f4(c.Exo.MaxRaw))
		}
	} else {
		b.WriteString("Test split (egocentric images with GT masks): do the γ2 anchors fall on the afforded part? On GT: share of the anchors' weight on the GT mask pooled to the feature grid, against the share of all cells' (the chance level).\n\n")
		b.WriteString("| class | maps | above γ2 | anchors on GT | all cells on GT | mean cos | max cos |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, c := range all {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", c.Name, c.Ego.Maps, f4(c.Ego.AboveGamma2), f4(c.Ego.AnchorOnGT), f4(c.Ego.CellsOnGT), f4(c.Ego.MeanRaw), f4(c.Ego.MaxRaw))
		}
		b.WriteString("\nPart discovery (b) and the effect of K (c) need exocentric images: run with --split train.\n")
		return b.String()
	}
	fmt.Fprintf(&b, "\n## (b) Part discovery per class (K = %d)\n\nHow reliable is the pIoU-based part selection? Candidates: exocentric descriptors above γ1; below K the sample is object level whatever α. p: the clustered samples' best reliability. Part level at α: computed once, thresholds swept offline.\n\n", r.K)
	b.WriteString("| class | samples | candidates mean | min | max | fewer than K | median p |")
	for _, a := range TableAlphas {
		fmt.Fprintf(&b, " part at α=%g |", a)
	}
	b.WriteString("\n|" + strings.Repeat(" --- |", 7+len(TableAlphas)) + "\n")
	for _, c := range all {
		d := c.Discovery
		mean, lo, hi := math.NaN(), 0, 0
		if len(d.Candidates) > 0 {
			s := 0
			for _, n := range d.Candidates {
				s += n
			}
			mean, lo, hi = float64(s)/float64(len(d.Candidates)), slices.Min(d.Candidates), slices.Max(d.Candidates)
		}
		med := math.NaN()
		if len(d.PScores) > 0 {
			ps := slices.Clone(d.PScores)
			slices.Sort(ps)
			med = ps[len(ps)/2]
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %d | %d | %s | %s |", c.Name, d.Samples, mean, lo, hi, f4(float64(d.Unclustered)/float64(max(d.Samples, 1))), f4(med))
		for _, a := range TableAlphas {
			fmt.Fprintf(&b, " %s |", f4(shareAt(d.PScores, d.Samples, a)))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n## (c) Effect of K\n\nHow many clusters does the data support? Empty: share of the clustered samples' K clusters that end empty; part level at α = %g.\n\n", r.Alpha)
	b.WriteString("| class |")
	for _, k := range r.Overall.Clusters {
		fmt.Fprintf(&b, " empty K=%d | part K=%d |", k.K, k.K)
	}
	b.WriteString("\n|" + strings.Repeat(" --- |", 1+2*len(r.Overall.Clusters)) + "\n")
	for _, c := range all {
		fmt.Fprintf(&b, "| %s |", c.Name)
		for _, k := range c.Clusters {
			fmt.Fprintf(&b, " %s | %s |", f4(k.EmptyShare), f4(k.PartShare))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// shareAt is the share of n samples whose best p reaches a.
func shareAt(ps []float64, n int, a float64) float64 {
	k := 0
	for _, p := range ps {
		if p >= a {
			k++
		}
	}
	return float64(k) / float64(max(n, 1))
}
