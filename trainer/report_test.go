package trainer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/report/gallery"
)

// With report: true the run keeps the report of its best epoch in out_dir/report, and nothing
// of the other epochs' reports.
func TestReportOfBestEpoch(t *testing.T) {
	s := smallSynth(t)
	cfg := smallConfig(t, s)
	cfg.Report = true
	rec := &recorder{}
	if err := Run(context.Background(), cfg, false, rec); err != nil {
		t.Fatal(err)
	}
	best := 0
	for _, l := range rec.epochs {
		if l.Best {
			best = l.Epoch
		}
	}
	if best == 0 {
		t.Fatal("no best epoch")
	}
	dir := filepath.Join(cfg.OutDir, ReportDir)
	b, err := os.ReadFile(filepath.Join(dir, gallery.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{
		fmt.Sprintf("epoch %d</title>", best),
		filepath.Join(cfg.OutDir, BestFile) + " (",
		"sha256 ",
		"report: true",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if n := strings.Count(page, `<figure class="tile"`); n != cfg.TestLimit+min(cfg.TestLimit, gallery.WorstN) {
		t.Errorf("%d tiles for test_limit %d", n, cfg.TestLimit)
	}
	entries, _ := os.ReadDir(cfg.OutDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ReportDir+".") {
			t.Errorf("%s left in out_dir", e.Name())
		}
	}
	// A folder of the user's in place of the report is refused before any training.
	other := smallConfig(t, s)
	other.Report = true
	if err := os.MkdirAll(filepath.Join(other.OutDir, ReportDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other.OutDir, ReportDir, "mine.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), other, false, &recorder{}); err == nil || !strings.Contains(err.Error(), filepath.Join(other.OutDir, ReportDir)) {
		t.Errorf("a non-report out_dir/report: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other.OutDir, StateFile)); err == nil {
		t.Error("the refused run trained")
	}
	// The setting may change on resume (it changes no figure).
	cfg.Report, cfg.Epochs = false, 3
	if err := Run(context.Background(), cfg, true, &recorder{}); err != nil {
		t.Fatalf("resume with report off: %v", err)
	}
}
