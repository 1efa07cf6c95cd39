package gallery

import (
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/torch"
)

// fakeItem is one synthetic image with its GT, maps and figures.
type fakeItem struct {
	it   Item
	img  data.Image
	gt   *torch.Tensor
	maps map[string]*torch.Tensor
}

// fakeItems draws n images of the given sizes (cycled) in the given classes (cycled) with random
// maps and GT, and figures whose KLD differs per image (so that the order is defined).
func fakeItems(t *testing.T, n int, classes []string, sizes [][2]int) []fakeItem {
	t.Helper()
	g, err := torch.NewGenerator(7, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	var out []fakeItem
	for i := range n {
		h, w := sizes[i%len(sizes)][0], sizes[i%len(sizes)][1]
		pix := torch.Randint(0, 256, []int64{int64(h), int64(w), 3}, g).ToDType(torch.Uint8).Bytes()
		gt := torch.Escape(torch.Rand([]int64{int64(h), int64(w)}, g).MulScalar(255).ToDType(torch.Uint8))
		maps := map[string]*torch.Tensor{}
		scores := map[string]data.Scores{}
		for j, m := range []string{"cam", "ree", "rem"} {
			maps[m] = torch.Escape(torch.Rand([]int64{14, 14}, g))
			// distinct KLDs, not in the order of i
			scores[m] = data.Scores{KLD: float64((i*7+j*3)%n) + 0.25*float64(j), SIM: 0.1 * float64(j), NSS: float64(i)}
		}
		out = append(out, fakeItem{
			it:  Item{Name: fmt.Sprintf("Seen/testset/egocentric/%s/obj/img_%03d.jpg", classes[i%len(classes)], i), Class: classes[i%len(classes)], Object: "obj", Scores: scores},
			img: data.Image{W: w, H: h, Pix: pix}, gt: gt, maps: maps,
		})
	}
	return out
}

func writeReport(t *testing.T, dir string, items []fakeItem, o Options, p Page) *Writer {
	t.Helper()
	w, err := Create(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range items {
		gt := f.gt
		if !o.GT {
			gt = nil
		}
		if err := w.Add(f.it, f.img, gt, f.maps); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(p); err != nil {
		t.Fatal(err)
	}
	return w
}

func readPage(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	tileRE = regexp.MustCompile(`<figure class="tile" data-i="(\d+)"`)
	rowRE  = regexp.MustCompile(`<tr data-class="([^"]+)"`)
)

// between returns the part of s from the first start to the next end after it.
func between(t *testing.T, s, start, end string) string {
	t.Helper()
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("page lacks %q", start)
	}
	j := strings.Index(s[i:], end)
	if j < 0 {
		t.Fatalf("page lacks %q after %q", end, start)
	}
	return s[i : i+j]
}

func tileOrder(s string) []int {
	var out []int
	for _, m := range tileRE.FindAllStringSubmatch(s, -1) {
		i, _ := strconv.Atoi(m[1])
		out = append(out, i)
	}
	return out
}

// expectedOrder is the worst-first order by KLD of map m of the items with the given indices.
func expectedOrder(items []fakeItem, idx []int, m string) []int {
	out := slices.Clone(idx)
	slices.SortStableFunc(out, func(a, b int) int {
		ka, kb := items[a].it.Scores[m].KLD, items[b].it.Scores[m].KLD
		if ka != kb {
			if ka > kb {
				return -1
			}
			return 1
		}
		return a - b
	})
	return out
}

func TestEvaluationReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rep")
	classes := []string{"hold", "cut_with"}
	items := fakeItems(t, WorstN+2, classes, [][2]int{{48, 64}, {80, 40}, {33, 33}})
	page := Page{Title: "affgd eval: test", Info: []Field{{"dataset", "synthetic <&>"}}, Config: "limit: 0\n",
		Classes: []string{"beat", "hold", "cut_with", "type_on"}}
	writeReport(t, dir, items, Options{GT: true}, page)
	s := readPage(t, dir)

	// one row per class with images, in the class list's order; the others named
	var rows []string
	for _, m := range rowRE.FindAllStringSubmatch(s, -1) {
		rows = append(rows, m[1])
	}
	if !slices.Equal(rows, []string{"hold", "cut_with"}) {
		t.Errorf("table rows %v, want [hold cut_with]", rows)
	}
	if e := between(t, s, `<p class="empty"`, "</p>"); !strings.Contains(e, "(2): beat, type_on") {
		t.Errorf("classes without images: %q", e)
	}
	if !strings.Contains(s, "synthetic &lt;&amp;&gt;") {
		t.Error("the run's fields are not HTML-escaped")
	}
	if strings.Contains(s, "ZgotmplZ") {
		t.Error("the template refused a value (ZgotmplZ in the page)")
	}
	if strings.Contains(s, "http://") || strings.Contains(s, "https://") {
		t.Error("the page refers to the network")
	}

	// each class grid and the worst section worst-first by ree KLD
	for ci, c := range classes {
		var idx []int
		for i := range items {
			if items[i].it.Class == c {
				idx = append(idx, i)
			}
		}
		grid := between(t, s, fmt.Sprintf(`<section class="cls" id="class-%d"`, ci), "</section>")
		if got, want := tileOrder(grid), expectedOrder(items, idx, "ree"); !slices.Equal(got, want) {
			t.Errorf("class %s: tiles %v, want %v", c, got, want)
		}
	}
	all := make([]int, len(items))
	for i := range all {
		all[i] = i
	}
	worst := between(t, s, `<section id="worst">`, "</section>")
	if got, want := tileOrder(worst), expectedOrder(items, all, "ree")[:WorstN]; !slices.Equal(got, want) {
		t.Errorf("worst section: %v, want %v", got, want)
	}
	// every tile carries its KLDs for the script
	if n := strings.Count(s, `data-kld-cam="`); n != len(items)+WorstN {
		t.Errorf("%d tiles carry data-kld-cam, want %d", n, len(items)+WorstN)
	}

	// the pictures: a strip of 5 panels per image, small and large
	for i := range items {
		for _, pic := range []struct {
			name string
			box  int
		}{{fmt.Sprintf("%05d.jpg", i), ThumbBox}, {fmt.Sprintf("%05d_l.jpg", i), LargeBox}} {
			f, err := os.Open(filepath.Join(dir, ImageDir, pic.name))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := jpeg.DecodeConfig(f)
			f.Close()
			if err != nil || cfg.Width != stripWidth(5, pic.box) || cfg.Height != pic.box {
				t.Errorf("%s: %dx%d (%v), want %dx%d", pic.name, cfg.Width, cfg.Height, err, stripWidth(5, pic.box), pic.box)
			}
		}
	}
	if !IsReport(dir) {
		t.Error("no marker file")
	}

	// A second report into the same folder replaces the first (fewer images: no stale pictures).
	writeReport(t, dir, items[:3], Options{GT: true, OrderMap: "cam"}, page)
	entries, _ := os.ReadDir(filepath.Join(dir, ImageDir))
	if len(entries) != 6 {
		t.Errorf("rewritten report: %d pictures, want 6", len(entries))
	}
	if s := readPage(t, dir); !strings.Contains(s, `<body data-map="cam"`) {
		t.Error("rewritten report does not order by cam")
	}
}

// TestSmallReports: one image, and a prediction (no GT, no figures).
func TestSmallReports(t *testing.T) {
	items := fakeItems(t, 1, []string{"hold"}, [][2]int{{30, 70}})
	dir := filepath.Join(t.TempDir(), "one")
	writeReport(t, dir, items, Options{GT: true}, Page{Title: "one", Classes: []string{"hold", "beat"}})
	s := readPage(t, dir)
	if got := tileOrder(s); !slices.Equal(got, []int{0, 0}) { // the worst section and the class grid
		t.Errorf("one-image report tiles %v", got)
	}
	if n := len(rowRE.FindAllString(s, -1)); n != 1 {
		t.Errorf("one-image report: %d table rows", n)
	}

	pred := filepath.Join(t.TempDir(), "pred")
	items = fakeItems(t, 3, []string{"hold"}, [][2]int{{50, 50}})
	for i := range items {
		items[i].it.Scores = nil
	}
	writeReport(t, pred, items, Options{}, Page{Title: "predict"})
	s = readPage(t, pred)
	if strings.Contains(s, `id="summary"`) || strings.Contains(s, `id="worst"`) || strings.Contains(s, `class="k">KLD`) {
		t.Error("a prediction's page shows figures")
	}
	if got := tileOrder(s); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("prediction tiles %v, want the given order", got)
	}
	f, err := os.Open(filepath.Join(pred, ImageDir, "00000.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cfg, _, err := image.DecodeConfig(f); err != nil || cfg.Width != stripWidth(4, ThumbBox) {
		t.Errorf("prediction strip: %d wide (%v), want 4 panels (%d)", cfg.Width, err, stripWidth(4, ThumbBox))
	}
}

func TestCreateRefuses(t *testing.T) {
	tmp := t.TempDir()
	other := filepath.Join(tmp, "photos")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "holiday.jpg"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(tmp, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		o    Options
		want []string // "" = no error
	}{
		{"folder that is not a report", other, Options{}, []string{other, "not an affgd report", "holiday.jpg"}},
		{"a file", file, Options{}, []string{file, "not a folder"}},
		{"unknown order map", filepath.Join(tmp, "x"), Options{OrderMap: "kld"}, []string{`"kld"`, "cam, ree, rem"}},
		{"bad alpha", filepath.Join(tmp, "y"), Options{Alpha: 2}, []string{"opacity"}},
		{"empty folder", empty, Options{}, nil},
		{"new folder", filepath.Join(tmp, "a", "b"), Options{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(tc.dir, tc.o)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(other, MarkerFile)); err == nil {
		t.Error("a refused folder got a marker")
	}
	// bad items
	w, err := Create(filepath.Join(tmp, "z"), Options{GT: true})
	if err != nil {
		t.Fatal(err)
	}
	items := fakeItems(t, 1, []string{"hold"}, [][2]int{{20, 20}})
	f := items[0]
	if err := w.Add(f.it, f.img, nil, f.maps); err == nil || !strings.Contains(err.Error(), "GT") {
		t.Errorf("missing GT: %v", err)
	}
	delete(f.maps, "rem")
	if err := w.Add(f.it, f.img, f.gt, f.maps); err == nil || !strings.Contains(err.Error(), "no rem map") {
		t.Errorf("missing map: %v", err)
	}
	if err := w.Add(f.it, data.Image{W: 4, H: 4, Pix: make([]byte, 5)}, f.gt, items[0].maps); err == nil {
		t.Error("bad image accepted")
	}
	if w.Len() != 0 {
		t.Errorf("%d images after failed Adds", w.Len())
	}
}

func TestPromote(t *testing.T) {
	tmp := t.TempDir()
	items := fakeItems(t, 2, []string{"hold"}, [][2]int{{20, 20}})
	a, b, to := filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "report")
	writeReport(t, a, items, Options{GT: true}, Page{Title: "first"})
	if err := Promote(a, to); err != nil {
		t.Fatal(err)
	}
	writeReport(t, b, items[:1], Options{GT: true}, Page{Title: "second"})
	if err := Promote(b, to); err != nil {
		t.Fatal(err)
	}
	if s := readPage(t, to); !strings.Contains(s, "<title>second</title>") {
		t.Error("the promoted report is not the second")
	}
	for _, p := range []string{a, b, to + ".old"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	other := filepath.Join(tmp, "other")
	os.MkdirAll(other, 0o755)
	writeReport(t, a, items, Options{GT: true}, Page{Title: "third"})
	if err := Promote(a, other); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("promote over a non-report folder: %v", err)
	}
}

func TestFileFieldAndRunFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.pth")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := FileField("checkpoint", p)
	if err != nil {
		t.Fatal(err)
	}
	// sha256("abc") = ba7816bf8f01cfea...
	if want := p + " (3 bytes, sha256 ba7816bf8f01)"; f.Value != want {
		t.Errorf("FileField: %q, want %q", f.Value, want)
	}
	if _, err := FileField("checkpoint", p+".missing"); err == nil || !strings.Contains(err.Error(), p+".missing") {
		t.Errorf("missing file: %v", err)
	}
	rf := RunFields(torch.CPU, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	keys := map[string]string{}
	for _, f := range rf {
		keys[f.Key] = f.Value
	}
	if keys["date"] != "2026-01-02 03:04:05 UTC" || !strings.HasPrefix(keys["device"], "cpu") || keys["affgd commit"] == "" {
		t.Errorf("RunFields: %v", rf)
	}
}

// Close removes an unfinished report (a failed run) and keeps a finished one.
func TestCloseDiscardsUnfinished(t *testing.T) {
	var nilWriter *Writer
	nilWriter.Close() // no --report: a no-op
	if err := nilWriter.Discard(); err != nil {
		t.Fatal(err)
	}
	items := fakeItems(t, 1, []string{"hold"}, [][2]int{{20, 20}})
	dir := filepath.Join(t.TempDir(), "r")
	w, err := Create(dir, Options{GT: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(items[0].it, items[0].img, items[0].gt, items[0].maps); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := os.Stat(dir); err == nil {
		t.Error("an unfinished report survived Close")
	}
	w = writeReport(t, dir, items, Options{GT: true}, Page{Title: "done"})
	w.Close()
	if !IsReport(dir) {
		t.Error("Close removed a finished report")
	}
}

// A picture that cannot be written fails the report: at a later Add or at Finish, naming it.
func TestDrawingFailureSurfaces(t *testing.T) {
	items := fakeItems(t, 3, []string{"hold"}, [][2]int{{20, 20}})
	dir := filepath.Join(t.TempDir(), "r")
	w, err := Create(dir, Options{GT: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, ImageDir)); err != nil { // pictures cannot be written
		t.Fatal(err)
	}
	var got error
	for _, f := range items {
		if got = w.Add(f.it, f.img, f.gt, f.maps); got != nil {
			break
		}
	}
	if got == nil {
		got = w.Finish(Page{Title: "x"})
	}
	if got == nil || !strings.Contains(got.Error(), filepath.Join(dir, ImageDir)) {
		t.Errorf("error %v, want one naming %s", got, filepath.Join(dir, ImageDir))
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); err == nil {
		t.Error("a page was written for a report whose pictures failed")
	}
	w.Close()
}
