package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/affgd/affgd/internal/browser"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/report/gallery"
)

// screenshotDir is where the report test leaves its screenshots for a person to look at:
// $AFFGD_TEST_OUT/report, or out/test/report in the repository.
func screenshotDir(t *testing.T) string {
	base := os.Getenv("AFFGD_TEST_OUT")
	if base == "" {
		base = filepath.Join(testref.RepoRoot(), "out", "test")
	}
	d := filepath.Join(base, "report")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// perImageLine is one line of eval --per-image.
type perImageLine struct {
	Image, Action string
	Scores        map[string]struct{ KLD *float64 }
}

// worstFirstNames orders the per-image lines of one class worst-first by map m's KLD (a null
// KLD counts as the worst; ties in the file's order) and returns their images relative to root.
func worstFirstNames(t *testing.T, lines []perImageLine, class, m, root string) []string {
	t.Helper()
	type e struct {
		i    int
		k    float64
		name string
	}
	var es []e
	for i, l := range lines {
		if l.Action != class {
			continue
		}
		k := math.Inf(1)
		if p := l.Scores[m].KLD; p != nil {
			k = *p
		}
		rel, err := filepath.Rel(root, l.Image)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e{i, k, rel})
	}
	slices.SortStableFunc(es, func(a, b e) int {
		switch {
		case a.k > b.k:
			return -1
		case a.k < b.k:
			return 1
		}
		return a.i - b.i
	})
	var out []string
	for _, x := range es {
		out = append(out, x.name)
	}
	return out
}

// pageCheck opens a report in the browser and fails the test on any console error.
func pageCheck(t *testing.T, b *browser.Browser, dir string) {
	t.Helper()
	before := len(b.Errors())
	if err := b.Open("file://" + filepath.Join(dir, gallery.IndexFile)); err != nil {
		t.Fatalf("opening %s: %v", dir, err)
	}
	if _, err := browser.Eval[bool](b, "true"); err != nil {
		t.Fatal(err)
	}
	if errs := b.Errors()[before:]; len(errs) > 0 {
		t.Errorf("%s: the console reports errors:\n%s", dir, strings.Join(errs, "\n"))
	}
}

func evalJS[T any](t *testing.T, b *browser.Browser, js string) T {
	t.Helper()
	v, err := browser.Eval[T](b, js)
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// testReport checks eval --report and predict --report in headless Chromium: the page loads from
// a file URL without console errors, has one table row per class, sorts by a column, orders each
// class grid as eval --per-image's figures say, enlarges a tile; small and bad cases.
func (c *cliEnv) testReport(t *testing.T) {
	rep := filepath.Join(c.dir, "report")
	perImage := filepath.Join(c.dir, "report_per_image.jsonl")
	evalArgs := []string{"eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1, "--vocab", c.voc}
	r := c.mustRun(t, append(evalArgs, "--report", rep, "--per-image", perImage, "--json")...)
	var sum report.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("eval --report --json: %v\n%s", err, r.stdout)
	}
	b, err := os.ReadFile(perImage)
	if err != nil {
		t.Fatal(err)
	}
	var per []perImageLine
	for _, l := range lines(string(b)) {
		var p perImageLine
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("--per-image: %v", err)
		}
		per = append(per, p)
	}
	if len(per) != len(c.testImages) {
		t.Fatalf("--per-image: %d lines for %d test images", len(per), len(c.testImages))
	}

	// Bad input, before the browser: an existing folder that is not a report is refused, naming
	// it, and left as it was; a report folder is rewritten.
	other := filepath.Join(c.dir, "not_a_report")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		append(slices.Clone(evalArgs), "--report", other),
		{"predict", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--action", "hold", "--image", c.holdImages[0], "--out", filepath.Join(c.dir, "pred_refused"), "--report", other},
	} {
		r := c.run(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, other) || !strings.Contains(r.stderr, "not an affgd report") {
			t.Errorf("affgd %s: exit %d, stderr %q; want exit 1 naming %s", args[0], r.code, tail(r.stderr), other)
		}
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 {
		t.Errorf("the refused folder now holds %d entries, want its one file", len(entries))
	}
	if r := c.run(t, append(slices.Clone(evalArgs), "--report", rep, "--report-map", "kld")...); r.code != 1 || !strings.Contains(r.stderr, `"kld"`) {
		t.Errorf("--report-map kld: exit %d, %q", r.code, tail(r.stderr))
	}
	// A run that fails after preparing its report folder leaves none.
	missing := filepath.Join(c.dir, "no_such.pth")
	for _, args := range [][]string{
		{"eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", missing, "--vocab", c.voc, "--report", filepath.Join(c.dir, "report_failed_eval")},
		{"predict", "--checkpoint", missing, "--vocab", c.voc, "--action", "hold", "--image", c.holdImages[0], "--out", filepath.Join(c.dir, "pred_failed"), "--report", filepath.Join(c.dir, "report_failed_predict")},
	} {
		r := c.run(t, args...)
		dir := args[len(args)-1]
		if r.code != 1 || !strings.Contains(r.stderr, missing) {
			t.Errorf("affgd %s with a missing checkpoint: exit %d, %q", args[0], r.code, tail(r.stderr))
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("affgd %s failed but left its report folder %s", args[0], dir)
		}
	}

	// One test image (every other class without test images), and a prediction.
	rep1 := filepath.Join(c.dir, "report_one")
	c.mustRun(t, append(evalArgs, "--limit", "1", "--report", rep1)...)
	repPred := filepath.Join(c.dir, "report_predict")
	pred := []string{"predict", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--action", "hold", "--out", filepath.Join(c.dir, "pred_report"), "--report", repPred}
	for _, p := range c.holdImages {
		pred = append(pred, "--image", p)
	}
	c.mustRun(t, pred...)

	bin := browser.ForTest(t)
	start := time.Now()
	br, err := browser.New(bin, browser.Options{Width: 1400, Height: 1000, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	shots := screenshotDir(t)

	pageCheck(t, br, rep)
	// The commit the page names is the one the binary carries (this test's build has no -X flag:
	// Go's VCS stamp, or "unknown" without one).
	if got, want := evalJS[string](t, br, `Array.from(document.querySelectorAll("table.info tr")).filter(r => r.cells[0].textContent == "affgd commit").map(r => r.cells[1].textContent).join()`), vcsCommit(t, c.bin); got != want {
		t.Errorf("the page names commit %q, the binary carries %q", got, want)
	}
	if n := evalJS[int](t, br, `document.querySelectorAll("#classes tr").length`); n != len(sum.Classes) {
		t.Errorf("the table has %d class rows, want %d (%v)", n, len(sum.Classes), sum.Classes)
	}
	// Each class grid worst-first by ree KLD, then (after choosing cam) by cam KLD.
	gridJS := `Array.from(document.querySelectorAll(".cls")).map(s => [s.dataset.class].concat(Array.from(s.querySelectorAll(".tile .name")).map(n => n.title)))`
	checkGrids := func(m string) {
		t.Helper()
		grids := evalJS[[][]string](t, br, gridJS)
		if len(grids) != len(sum.Classes) {
			t.Fatalf("%d class grids, want %d", len(grids), len(sum.Classes))
		}
		for _, g := range grids {
			want := worstFirstNames(t, per, g[0], m, c.root)
			if !slices.Equal(g[1:], want) {
				t.Errorf("class %s by %s KLD: grid %v, want %v (eval --per-image)", g[0], m, g[1:], want)
			}
		}
	}
	checkGrids("ree")
	if n := evalJS[int](t, br, `document.querySelectorAll("#worst-grid .tile").length`); n != min(gallery.WorstN, len(per)) {
		t.Errorf("worst section: %d tiles", n)
	}
	// The table sorts by ree KLD ascending, then descending; its values are eval's means.
	col := 2 + 3*slices.Index([]string{"cam", "ree", "rem"}, "ree")
	colJS := fmt.Sprintf(`Array.from(document.querySelectorAll("#classes tr")).map(r => [r.dataset.class, r.cells[%d].dataset.v])`, col)
	for _, dir := range []string{"ascending", "descending"} {
		if err := br.Click(`th[data-key="ree-kld"]`); err != nil {
			t.Fatal(err)
		}
		if got := evalJS[string](t, br, `document.querySelector('th[data-key="ree-kld"]').getAttribute("aria-sort")`); got != dir {
			t.Errorf("ree KLD heading: aria-sort %q, want %q", got, dir)
		}
		rows := evalJS[[][]string](t, br, colJS)
		var vals []float64
		for _, row := range rows {
			var v float64
			fmt.Sscan(row[1], &v)
			if want := sum.PerClass[row[0]]["ree"].KLD; v != want {
				t.Errorf("row %s: ree KLD %v, eval --json %v", row[0], v, want)
			}
			vals = append(vals, v)
		}
		sorted := slices.IsSorted(vals)
		if dir == "descending" {
			slices.Reverse(vals)
			sorted = slices.IsSorted(vals)
		}
		if !sorted {
			t.Errorf("sorted %s by ree KLD: rows %v", dir, rows)
		}
	}
	if err := br.Click(`#order input[value="cam"]`); err != nil {
		t.Fatal(err)
	}
	checkGrids("cam")
	if err := br.Click(`#order input[value="ree"]`); err != nil {
		t.Fatal(err)
	}
	// The visible pictures load (a missing one is a console error too).
	if err := br.WaitTrue(`Array.from(document.querySelectorAll("#worst-grid img")).slice(0, 4).every(i => i.complete && i.naturalWidth > 0)`, 20*time.Second); err != nil {
		t.Error(err)
	}
	png, err := br.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	writeShot(t, filepath.Join(shots, "eval.png"), png)
	// A click on a tile shows its large strip.
	if err := br.Click(`#worst-grid .tile`); err != nil {
		t.Fatal(err)
	}
	if err := br.WaitTrue(`!document.getElementById("lb").hidden && document.querySelector("#lb img").src.endsWith("_l.jpg") && document.querySelector("#lb img").complete && document.querySelector("#lb img").naturalWidth > 0`, 20*time.Second); err != nil {
		t.Error(err)
	}
	png, err = br.ViewportScreenshot()
	if err != nil {
		t.Fatal(err)
	}
	writeShot(t, filepath.Join(shots, "eval_enlarged.png"), png)
	if errs := br.Errors(); len(errs) > 0 {
		t.Errorf("console errors while using the page:\n%s", strings.Join(errs, "\n"))
	}

	pageCheck(t, br, rep1)
	if n := evalJS[int](t, br, `document.querySelectorAll("#classes tr").length`); n != 1 {
		t.Errorf("one-image report: %d class rows, want 1", n)
	}
	if s := evalJS[string](t, br, `(document.getElementById("empty") || {}).textContent || ""`); !strings.Contains(s, "without test images") {
		t.Errorf("one-image report does not name the classes without test images: %q", s)
	}
	png, err = br.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	writeShot(t, filepath.Join(shots, "eval_one_image.png"), png)

	pageCheck(t, br, repPred)
	if n := evalJS[int](t, br, `document.querySelectorAll(".cls .tile").length`); n != len(c.holdImages) {
		t.Errorf("predict report: %d tiles, want %d", n, len(c.holdImages))
	}
	if n := evalJS[int](t, br, `document.querySelectorAll("#summary, #worst, .tile .k").length`); n != 0 {
		t.Errorf("predict report shows figures (%d elements)", n)
	}
	png, err = br.Screenshot()
	if err != nil {
		t.Fatal(err)
	}
	writeShot(t, filepath.Join(shots, "predict.png"), png)
	t.Logf("browser checks: %.1fs; screenshots in %s", time.Since(start).Seconds(), shots)
}

// vcsCommit reads the VCS stamp of a Go binary as `go version -m` prints it: the revision, with
// "-dirty" when modified, or "unknown".
func vcsCommit(t *testing.T, bin string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	rev, modified := "", false
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "build" {
			k, v, _ := strings.Cut(f[1], "=")
			switch k {
			case "vcs.revision":
				rev = v
			case "vcs.modified":
				modified = v == "true"
			}
		}
	}
	if rev == "" {
		return "unknown"
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}

func writeShot(t *testing.T, path string, png []byte) {
	t.Helper()
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
