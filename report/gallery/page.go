package gallery

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/affgd/affgd/internal/buildinfo"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
)

// Page is what a report's page says besides its pictures.
type Page struct {
	Title   string   // the heading, e.g. "affgd eval: agd20k-seen"
	Info    []Field  // the run (command, dataset, weights, commit, date, device, ...), in display order
	Config  string   // the configuration as text (a config file), shown verbatim; may be empty
	Classes []string // the run's class list, in order; classes of it without images are named on the page
}

// Field is one line of a page's description of the run.
type Field struct{ Key, Value string }

// FileField describes a weights file: its path, size and the first 12 hex digits of its SHA-256.
func FileField(key, path string) (Field, error) {
	f, err := os.Open(path)
	if err != nil {
		return Field{}, fmt.Errorf("report: %s: %w", key, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Field{}, fmt.Errorf("report: %s %s: %w", key, path, err)
	}
	return Field{key, fmt.Sprintf("%s (%s, sha256 %s)", path, humanBytes(n), hex.EncodeToString(h.Sum(nil))[:12])}, nil
}

// RunFields are the lines every report ends its description with: affgd's commit (or
// "unknown"), libtorch's version, the device and the date (UTC).
func RunFields(dev torch.Device, now time.Time) []Field {
	d := dev.String()
	if dev.IsCPU() {
		d += fmt.Sprintf(" (%d libtorch threads)", torch.NumThreads())
	}
	return []Field{
		{"affgd commit", buildinfo.Commit()},
		{"libtorch", torch.Version()},
		{"device", d},
		{"date", now.UTC().Format("2006-01-02 15:04:05 UTC")},
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string

	pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
		"col":  func(i, j int) int { return 2 + 3*i + j }, // the summary column of map i's j-th figure
		"base": path.Base,
	}).Parse(pageHTML))
)

// view is the template's data.
type view struct {
	Title      string
	Info       []Field
	Config     string
	GT         bool
	Maps       []string
	OrderMap   string
	Images     int
	Overall    row
	Rows       []row
	Worst      []tile
	WorstN     int
	Sections   []section
	Empty      []string
	Columns    int // panels per strip
	ThumbW     int
	ThumbH     int
	Generated  string
	CSS        template.CSS
	JS         template.JS
	MapsJS     template.JS // the maps as a JSON array, for the script
	ColumnsCSS template.CSS
}

type row struct {
	Class, Anchor string
	N             int
	Cells         []cell
}

type cell struct{ V, Text, Title string }

type section struct {
	Class, Anchor string
	N             int
	Tiles         []tile
	Note          string
}

type tile struct {
	Index               int
	Thumb, Large        string
	Name, Class, Object string
	KLD                 []kv // map -> KLD, for the script's ordering
	Figs                []fig
}

type kv struct{ Map, V string }

type fig struct{ Map, KLD, SIM, NSS string }

// num formats a figure for display.
func num(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// raw formats a figure exactly, for sorting (JavaScript's parseFloat reads "NaN" as NaN).
func raw(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func anchor(i int) string { return fmt.Sprintf("class-%d", i) }

// render builds index.html.
func (w *Writer) render(p Page) ([]byte, error) {
	v := view{
		Title: p.Title, Info: p.Info, Config: p.Config, GT: w.o.GT, Maps: w.o.Maps, OrderMap: w.o.OrderMap,
		Images: len(w.entries), WorstN: WorstN,
		Columns: 1 + len(w.o.Maps), ThumbH: ThumbBox,
		CSS: template.CSS(pageCSS), JS: template.JS(pageJS),
	}
	if w.o.GT {
		v.Columns++
	}
	v.ThumbW = stripWidth(v.Columns, ThumbBox)
	v.ColumnsCSS = template.CSS(fmt.Sprintf("--cols:%d;--box:%dpx;--gap:%dpx", v.Columns, ThumbBox, Gap))
	mapsJS, _ := json.Marshal(w.o.Maps)
	v.MapsJS = template.JS(mapsJS)

	// The classes: the summary's order (the run's class list first), then any other in the order
	// of their first image.
	byClass := map[string][]int{}
	var order []string
	for i, e := range w.entries {
		if _, ok := byClass[e.Class]; !ok {
			order = append(order, e.Class)
		}
		byClass[e.Class] = append(byClass[e.Class], i)
	}
	var sum report.Summary
	if w.o.GT {
		acc := report.NewAccumulator(w.o.Maps...)
		acc.SetClassOrder(p.Classes...)
		for _, e := range w.entries {
			for _, m := range w.o.Maps {
				if err := acc.Add(e.Class, m, e.Scores[m]); err != nil {
					return nil, err
				}
			}
		}
		sum = acc.Summary()
		order = sum.Classes
	} else {
		known := map[string]bool{}
		for _, c := range order {
			known[c] = true
		}
		var listed []string
		for _, c := range p.Classes {
			if known[c] {
				listed = append(listed, c)
				delete(known, c)
			}
		}
		for _, c := range order {
			if known[c] {
				listed = append(listed, c)
			}
		}
		order = listed
	}
	has := map[string]bool{}
	for _, c := range order {
		has[c] = true
	}
	for _, c := range p.Classes {
		if !has[c] {
			v.Empty = append(v.Empty, c)
			has[c] = true
		}
	}

	tileOf := func(e entry) tile {
		t := tile{Index: e.index, Thumb: e.thumb, Large: e.large, Name: e.Name, Class: e.Class, Object: e.Object}
		if w.o.GT {
			for _, m := range w.o.Maps {
				s := e.Scores[m]
				t.KLD = append(t.KLD, kv{m, raw(s.KLD)})
				t.Figs = append(t.Figs, fig{m, num(s.KLD), num(s.SIM), num(s.NSS)})
			}
		} else {
			for _, m := range w.o.Maps {
				t.Figs = append(t.Figs, fig{Map: m})
			}
		}
		return t
	}
	cells := func(f map[string]report.Figures) []cell {
		var cs []cell
		for _, m := range w.o.Maps {
			x := f[m]
			nssTitle := ""
			if x.NaNNSS > 0 {
				nssTitle = fmt.Sprintf("%d image(s) with a constant map have NaN NSS; mean over the others %s", x.NaNNSS, num(x.NSSFinite))
			}
			cs = append(cs, cell{raw(x.KLD), num(x.KLD), ""}, cell{raw(x.SIM), num(x.SIM), ""}, cell{raw(x.NSS), num(x.NSS), nssTitle})
		}
		return cs
	}
	if w.o.GT {
		v.Overall = row{Class: "all classes", N: len(w.entries), Cells: cells(sum.Overall)}
	}
	all := make([]int, len(w.entries))
	for i := range all {
		all[i] = i
	}
	cmp := worstCmp(w.entries, w.o.OrderMap)
	for ci, c := range order {
		idx := slices.Clone(byClass[c])
		if w.o.GT {
			slices.SortStableFunc(idx, cmp)
			f := sum.PerClass[c]
			v.Rows = append(v.Rows, row{Class: c, Anchor: anchor(ci), N: len(idx), Cells: cells(f)})
		}
		s := section{Class: c, Anchor: anchor(ci), N: len(idx)}
		if w.o.GT {
			s.Note = fmt.Sprintf("mean %s KLD %s", w.o.OrderMap, num(sum.PerClass[c][w.o.OrderMap].KLD))
		}
		for _, i := range idx {
			s.Tiles = append(s.Tiles, tileOf(w.entries[i]))
		}
		v.Sections = append(v.Sections, s)
	}
	if w.o.GT {
		slices.SortStableFunc(all, cmp)
		for _, i := range all[:min(WorstN, len(all))] {
			v.Worst = append(v.Worst, tileOf(w.entries[i]))
		}
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", IndexFile, err)
	}
	return buf.Bytes(), nil
}

// worstCmp orders entry indices by the KLD of map m, largest first; a NaN KLD counts as the
// worst; ties keep the order the images were added in (the page's script orders the same way).
func worstCmp(es []entry, m string) func(a, b int) int {
	key := func(i int) float64 {
		k := es[i].Scores[m].KLD
		if math.IsNaN(k) {
			return math.Inf(1)
		}
		return k
	}
	return func(a, b int) int {
		ka, kb := key(a), key(b)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return es[a].index - es[b].index
	}
}
