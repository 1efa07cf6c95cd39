package trainer

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/report/gallery"
)

// ReportDir is the folder in out_dir that holds the HTML report of the best epoch's evaluation
// (config key report); each evaluation is drawn into ReportDir+".partial" and promoted there when
// its epoch is the best so far.
const ReportDir = "report"

// epochReport draws one epoch's evaluation into a report. Its methods do nothing on a nil
// report (report: false).
type epochReport struct {
	w    *gallery.Writer
	root string
	err  error
}

// startReport prepares the partial report of an epoch's evaluation; nil when report is off.
func (r *runner) startReport() (*epochReport, error) {
	if !r.cfg.Report {
		return nil, nil
	}
	w, err := gallery.Create(filepath.Join(r.cfg.OutDir, ReportDir+".partial"), gallery.Options{Maps: evaluate.Maps, OrderMap: headlineMap, GT: true})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &epochReport{w: w, root: r.testSet.Root}, nil
}

// add draws one evaluated image; the first failure is kept and ends the drawing.
func (e *epochReport) add(res evaluate.ImageResult) {
	if e == nil || e.err != nil {
		return
	}
	name := res.Item.Image
	if rel, err := filepath.Rel(e.root, name); err == nil {
		name = rel
	}
	e.err = e.w.Add(gallery.Item{Name: name, Class: res.Item.Action, Object: res.Item.Object, Scores: res.Scores}, res.RGB, res.GT, res.Maps)
}

// discard removes the partial report (an epoch that is not the best, or a failed evaluation).
func (e *epochReport) discard() {
	if e != nil {
		_ = e.w.Discard()
	}
}

// finish writes the page of epoch l (whose best.pth is saved) and makes it out_dir/report when l
// is the best epoch so far; otherwise it discards it.
func (e *epochReport) finish(r *runner, l EpochLog) error {
	if e == nil {
		return nil
	}
	if e.err != nil || !l.Best {
		e.discard()
		if e.err != nil {
			return fmt.Errorf("report: %w", e.err)
		}
		return nil
	}
	cfg := r.cfg
	info := []gallery.Field{
		{Key: "run", Value: cfg.OutDir},
		{Key: "epoch", Value: fmt.Sprintf("%d of %d (the best %s KLD so far: %.4f)", l.Epoch, cfg.Epochs, headlineMap, l.Eval.Overall[headlineMap].KLD)},
	}
	files := []struct{ key, path string }{{"checkpoint", filepath.Join(cfg.OutDir, BestFile)}, {"dino", cfg.DINO}, {"clip", cfg.CLIP}, {"init", cfg.Init}}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		fi, err := gallery.FileField(f.key, f.path)
		if err != nil {
			e.discard()
			return fmt.Errorf("report: %w", err)
		}
		info = append(info, fi)
	}
	info = append(info,
		gallery.Field{Key: "dataset", Value: fmt.Sprintf("%s (%s)", cfg.DataRoot, cfg.Divide)},
		gallery.Field{Key: "test images", Value: fmt.Sprintf("%d evaluated of %d", e.w.Len(), len(r.testSet.Items))})
	info = append(info, gallery.RunFields(r.dev, time.Now())...)
	div, _ := data.ParseDivide(cfg.Divide)
	page := gallery.Page{Title: fmt.Sprintf("affgd train: %s, epoch %d", filepath.Base(cfg.OutDir), l.Epoch), Info: info, Config: string(cfg.YAML()), Classes: div.Classes()}
	if err := e.w.Finish(page); err != nil {
		e.discard()
		return fmt.Errorf("report: %w", err)
	}
	if err := gallery.Promote(e.w.Dir(), filepath.Join(cfg.OutDir, ReportDir)); err != nil {
		e.discard()
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// checkReportDir refuses, before any training, an out_dir/report that is not an affgd report.
func checkReportDir(cfg Config) error {
	if !cfg.Report {
		return nil
	}
	dir := filepath.Join(cfg.OutDir, ReportDir)
	if _, err := os.Stat(dir); err == nil && !gallery.IsReport(dir) {
		return fmt.Errorf("report: %s exists and is not an affgd report (no %s): move it away or set report: false", dir, gallery.MarkerFile)
	}
	return nil
}
