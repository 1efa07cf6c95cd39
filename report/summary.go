package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/affgd/affgd/data"
)

// Accumulator collects per-image scores (METHOD.md §7) of several maps and averages them overall
// and per action class. It is meant for one goroutine: its methods must not be called
// concurrently (guard it with a mutex when several goroutines score images).
type Accumulator struct {
	maps    []string
	known   map[string]bool
	classes []string // first-seen order, after the order given to SetClassOrder
	seen    map[string]bool
	overall map[string]*sums
	per     map[string]map[string]*sums
}

// sums holds running sums over the images of one (class, map) or one map.
type sums struct {
	n             int
	kld, sim, nss float64
	nanNSS        int
	nssFinite     float64
	nFinite       int
}

func (s *sums) add(x data.Scores) {
	s.n++
	s.kld += x.KLD
	s.sim += x.SIM
	s.nss += x.NSS
	if math.IsNaN(x.NSS) {
		s.nanNSS++
	} else {
		s.nssFinite += x.NSS
		s.nFinite++
	}
}

func (s *sums) figures() Figures {
	if s == nil || s.n == 0 {
		nan := math.NaN()
		return Figures{KLD: nan, SIM: nan, NSS: nan, NSSFinite: nan}
	}
	n := float64(s.n)
	f := Figures{N: s.n, KLD: s.kld / n, SIM: s.sim / n, NSS: s.nss / n, NaNNSS: s.nanNSS, NSSFinite: math.NaN()}
	if s.nFinite > 0 {
		f.NSSFinite = s.nssFinite / float64(s.nFinite)
	}
	return f
}

// NewAccumulator returns an empty accumulator for the named maps, e.g. "cam", "ree", "rem", in
// the order the reports list them. Repeated names count once; scores of any other map are
// refused by Add.
func NewAccumulator(maps ...string) *Accumulator {
	a := &Accumulator{
		known:   map[string]bool{},
		seen:    map[string]bool{},
		overall: map[string]*sums{},
		per:     map[string]map[string]*sums{},
	}
	for _, m := range maps {
		if !a.known[m] {
			a.known[m] = true
			a.maps = append(a.maps, m)
		}
	}
	return a
}

// SetClassOrder fixes the order in which Summary lists classes: the given ones first, in this
// order (a dataset's class list, say), then any other class in the order its first image came.
// Classes without images are not listed. It may be called at any time before Summary.
func (a *Accumulator) SetClassOrder(classes ...string) {
	var order []string
	in := map[string]bool{}
	for _, c := range classes {
		if !in[c] {
			in[c] = true
			order = append(order, c)
		}
	}
	for _, c := range a.classes {
		if !in[c] {
			in[c] = true
			order = append(order, c)
		}
	}
	a.classes = order
	for _, c := range order {
		a.seen[c] = true
	}
}

// Add records one image's scores s for map mapName of an image of action class class. An unknown
// map or an empty class name is an error and records nothing. Any value is accepted, NaN
// included: a NaN NSS (a constant prediction) is averaged in, as the reference does, and counted.
func (a *Accumulator) Add(class, mapName string, s data.Scores) error {
	if a == nil {
		return fmt.Errorf("report: add: nil accumulator (use NewAccumulator)")
	}
	if !a.known[mapName] {
		return fmt.Errorf("report: add: unknown map %q (this accumulator takes %s)", mapName, quoteList(a.maps))
	}
	if class == "" {
		return fmt.Errorf("report: add: empty class name for map %q", mapName)
	}
	if !a.seen[class] {
		a.seen[class] = true
		a.classes = append(a.classes, class)
	}
	pc := a.per[class]
	if pc == nil {
		pc = map[string]*sums{}
		a.per[class] = pc
	}
	if pc[mapName] == nil {
		pc[mapName] = &sums{}
	}
	pc[mapName].add(s)
	if a.overall[mapName] == nil {
		a.overall[mapName] = &sums{}
	}
	a.overall[mapName].add(s)
	return nil
}

func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "no map at all"
	}
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// Figures are the mean metrics of one map over N images.
//
// KLD, SIM and NSS are plain means over the images (the running sum in the order the images came,
// divided by N, as the reference's sum(list)/len(list)). NSS is NaN when any image's NSS is NaN
// (a constant prediction has standard deviation 0), exactly as the reference reports it; NaNNSS
// counts those images and NSSFinite is the mean NSS over the others (NaN when there are none).
// With N = 0 every mean is NaN.
type Figures struct {
	N         int     // images
	KLD       float64 // mean KLD (lower is better)
	SIM       float64 // mean SIM (higher is better)
	NSS       float64 // mean NSS with NaNs averaged in (higher is better)
	NaNNSS    int     // images whose NSS is NaN
	NSSFinite float64 // mean NSS over the images whose NSS is not NaN
}

// Summary is an evaluation's result: the figures of every map overall and per action class.
type Summary struct {
	Maps     []string                      // the maps, in display order
	Overall  map[string]Figures            // map name -> figures over all images
	PerClass map[string]map[string]Figures // class -> map name -> figures over that class's images
	Classes  []string                      // classes with images, in the given or first-seen order
}

// Summary returns the figures of the images added so far. It does not reset the accumulator.
// Every map is present in Overall (with N = 0 when it has no image); PerClass holds every class
// in Classes and, for each, every map.
func (a *Accumulator) Summary() Summary {
	if a == nil {
		return Summary{Overall: map[string]Figures{}, PerClass: map[string]map[string]Figures{}}
	}
	s := Summary{
		Maps:     append([]string(nil), a.maps...),
		Overall:  map[string]Figures{},
		PerClass: map[string]map[string]Figures{},
	}
	for _, m := range a.maps {
		s.Overall[m] = a.overall[m].figures()
	}
	for _, c := range a.classes {
		pc, ok := a.per[c]
		if !ok {
			continue // named in SetClassOrder but without images
		}
		s.Classes = append(s.Classes, c)
		f := map[string]Figures{}
		for _, m := range a.maps {
			f[m] = pc[m].figures()
		}
		s.PerClass[c] = f
	}
	return s
}

// images returns the number of images of the summary: the largest N of its maps.
func (s Summary) images() int {
	n := 0
	for _, m := range s.Maps {
		n = max(n, s.Overall[m].N)
	}
	return n
}

// nssFootnote explains the "NaN (k const; x w/o)" cells of Table.
const nssFootnote = "NaN (k const; x w/o): k constant predictions (std 0) make NSS NaN, and the mean with it, as in " +
	"the reference; x is the mean NSS without them."

// Table formats the summary as a fixed-width text table, one row per map in display order with
// the columns N, KLD↓, SIM↑ and NSS↑ (↓ lower is better, ↑ higher is better), three decimals as
// the reference prints them. With perClass a second table follows with one row per (class, map).
// A NaN NSS mean prints as "NaN (k const; x w/o)" — k images with a NaN NSS, x the mean over the
// others — and a footnote line explains it. A summary without images says "no images".
func (s Summary) Table(perClass bool) string {
	if s.images() == 0 {
		return "no images\n"
	}
	var b strings.Builder
	anyNaN := false
	row := func(tw *tableWriter, lead []string, f Figures) {
		nss, isNaN := formatNSS(f)
		anyNaN = anyNaN || isNaN
		tw.add(append(lead, strconv.Itoa(f.N), formatFloat(f.KLD), formatFloat(f.SIM), nss)...)
	}
	tw := &tableWriter{head: []string{"map", "N", "KLD↓", "SIM↑", "NSS↑"}, leftCols: 1}
	for _, m := range s.Maps {
		row(tw, []string{m}, s.Overall[m])
	}
	tw.write(&b)
	if perClass && len(s.Classes) > 0 {
		b.WriteString("\nper class:\n")
		tw := &tableWriter{head: []string{"class", "map", "N", "KLD↓", "SIM↑", "NSS↑"}, leftCols: 2}
		for _, c := range s.Classes {
			for i, m := range s.Maps {
				name := c
				if i > 0 {
					name = ""
				}
				row(tw, []string{name, m}, s.PerClass[c][m])
			}
		}
		tw.write(&b)
	}
	if anyNaN {
		b.WriteString(nssFootnote + "\n")
	}
	return b.String()
}

func formatFloat(x float64) string {
	if math.IsNaN(x) {
		return "NaN"
	}
	return strconv.FormatFloat(x, 'f', 3, 64)
}

// formatNSS prints a mean NSS, explaining a NaN one; it reports whether the mean was NaN with
// images behind it.
func formatNSS(f Figures) (string, bool) {
	if !math.IsNaN(f.NSS) || f.N == 0 {
		return formatFloat(f.NSS), false
	}
	if f.NaNNSS == 0 { // NaN from an infinite or otherwise undefined value, not a constant map
		return "NaN", false
	}
	return fmt.Sprintf("NaN (%d const; %s w/o)", f.NaNNSS, formatFloat(f.NSSFinite)), true
}

// tableWriter lays out rows of cells in columns padded to their widest cell; the first leftCols
// columns are left-aligned, the rest right-aligned.
type tableWriter struct {
	head     []string
	rows     [][]string
	leftCols int
}

func (t *tableWriter) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *tableWriter) write(b *strings.Builder) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var l strings.Builder
		for i, c := range r {
			if i > 0 {
				l.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < t.leftCols {
				l.WriteString(c + pad)
			} else {
				l.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(t.head)
	for _, r := range t.rows {
		line(r)
	}
}

// MarshalJSON encodes the summary with stable keys, maps and classes in display order:
//
//	{"maps": {"cam": {"n": 1675, "kld": 1.2, "sim": 0.4, "nss": 1.3, "nss_nan": 0, "nss_finite": 1.3}, ...},
//	 "per_class": {"beat": {"cam": {...}, ...}, ...},
//	 "map_order": ["cam", ...], "class_order": ["beat", ...]}
//
// JSON has no NaN: a NaN (or infinite) mean is written as null — nss is null whenever nss_nan > 0,
// and every mean is null when n is 0.
func (s Summary) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"maps":{`)
	for i, m := range s.Maps {
		if i > 0 {
			b.WriteByte(',')
		}
		writeKey(&b, m)
		writeFigures(&b, s.Overall[m])
	}
	b.WriteString(`},"per_class":{`)
	for i, c := range s.Classes {
		if i > 0 {
			b.WriteByte(',')
		}
		writeKey(&b, c)
		b.WriteByte('{')
		for j, m := range s.Maps {
			if j > 0 {
				b.WriteByte(',')
			}
			writeKey(&b, m)
			writeFigures(&b, s.PerClass[c][m])
		}
		b.WriteByte('}')
	}
	b.WriteString(`},"map_order":[`)
	for i, m := range s.Maps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(m))
	}
	b.WriteString(`],"class_order":[`)
	for i, c := range s.Classes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(c))
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func writeKey(b *bytes.Buffer, k string) {
	b.WriteString(jsonString(k))
	b.WriteByte(':')
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func writeFigures(b *bytes.Buffer, f Figures) {
	fmt.Fprintf(b, `{"n":%d,"kld":%s,"sim":%s,"nss":%s,"nss_nan":%d,"nss_finite":%s}`,
		f.N, jsonFloat(f.KLD), jsonFloat(f.SIM), jsonFloat(f.NSS), f.NaNNSS, jsonFloat(f.NSSFinite))
}

// jsonFloat writes x in the shortest form that reads back exactly, or null for NaN and ±Inf.
func jsonFloat(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "null"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// jsonFigures is Figures as MarshalJSON writes them; a nil mean is a null (NaN).
type jsonFigures struct {
	N         int      `json:"n"`
	KLD       *float64 `json:"kld"`
	SIM       *float64 `json:"sim"`
	NSS       *float64 `json:"nss"`
	NaNNSS    int      `json:"nss_nan"`
	NSSFinite *float64 `json:"nss_finite"`
}

func (j jsonFigures) figures() Figures {
	v := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	return Figures{N: j.N, KLD: v(j.KLD), SIM: v(j.SIM), NSS: v(j.NSS), NaNNSS: j.NaNNSS, NSSFinite: v(j.NSSFinite)}
}

// UnmarshalJSON reads what MarshalJSON writes, null means back as NaN, so a summary stored in a
// log reads back equal. Without map_order or class_order the names are taken in sorted order.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var doc struct {
		Maps       map[string]jsonFigures            `json:"maps"`
		PerClass   map[string]map[string]jsonFigures `json:"per_class"`
		MapOrder   []string                          `json:"map_order"`
		ClassOrder []string                          `json:"class_order"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("report: summary JSON: %w", err)
	}
	out := Summary{Maps: doc.MapOrder, Classes: doc.ClassOrder,
		Overall: map[string]Figures{}, PerClass: map[string]map[string]Figures{}}
	if out.Maps == nil {
		out.Maps = slices.Sorted(maps.Keys(doc.Maps))
	}
	if out.Classes == nil {
		out.Classes = slices.Sorted(maps.Keys(doc.PerClass))
	}
	for m, f := range doc.Maps {
		out.Overall[m] = f.figures()
	}
	for c, ms := range doc.PerClass {
		pc := map[string]Figures{}
		for m, f := range ms {
			pc[m] = f.figures()
		}
		out.PerClass[c] = pc
	}
	*s = out
	return nil
}
