package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/report/gallery"
	"github.com/affgd/affgd/torch"
)

// reportFlags are eval's and predict's --report flags.
func reportFlags(gt bool) []cli.Flag {
	fs := []cli.Flag{&cli.StringFlag{Name: "report", Usage: "also write an HTML report (DIR/index.html and its pictures; a new or empty folder, or an earlier report)"}}
	if gt {
		fs = append(fs, &cli.StringFlag{Name: "report-map", Value: "ree", Usage: "the map whose KLD orders the report's grids when it opens (cam, ree or rem; the page can switch)"})
	}
	return fs
}

// newReport prepares the --report folder, or returns nil without --report.
func newReport(c *cli.Context, gt bool, alpha float64) (*gallery.Writer, error) {
	dir := c.String("report")
	if dir == "" {
		return nil, nil
	}
	o := gallery.Options{Maps: evaluate.Maps, GT: gt, Alpha: alpha}
	if gt {
		o.OrderMap = c.String("report-map")
	}
	w, err := gallery.Create(dir, o)
	if err != nil {
		return nil, fmt.Errorf("--report: %w", err)
	}
	return w, nil
}

// commandFields describe the command line and the weights of eval and predict.
func commandFields(c *cli.Context) ([]gallery.Field, error) {
	fs := []gallery.Field{{Key: "command", Value: "affgd " + strings.Join(os.Args[1:], " ")}}
	if p := c.String("checkpoint"); p != "" {
		f, err := gallery.FileField("checkpoint", p)
		if err != nil {
			return nil, err
		}
		return append(fs, f), nil
	}
	for _, k := range []string{"dino", "clip", "head"} {
		if p := c.String(k); p != "" {
			f, err := gallery.FileField(k, p)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
		}
	}
	if c.String("head") == "" {
		fs = append(fs, gallery.Field{Key: "head", Value: fmt.Sprintf("fresh, untrained (seed %d)", c.Uint64("seed"))})
	}
	return fs, nil
}

// flagConfig lists every flag of the command with its effective value, as the report's
// configuration.
func flagConfig(c *cli.Context) string {
	var b strings.Builder
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		v := c.Value(name)
		if s, ok := v.(cli.StringSlice); ok {
			v = strings.Join(s.Value(), ", ")
		}
		if name == "report" || fmt.Sprint(v) == "" {
			continue
		}
		fmt.Fprintf(&b, "%s: %v\n", name, v)
	}
	return b.String()
}

// evalReport collects eval's per-image results into a report. Its methods do nothing on a nil
// report (no --report).
type evalReport struct {
	w    *gallery.Writer
	root string
	err  error
	done bool
}

// newEvalReport prepares eval's --report folder; nil without --report.
func newEvalReport(c *cli.Context, ts *data.TestSet) (*evalReport, error) {
	w, err := newReport(c, true, 0)
	if w == nil || err != nil {
		return nil, err
	}
	return &evalReport{w: w, root: ts.Root}, nil
}

// close removes an unfinished report (an evaluation that failed).
func (r *evalReport) close() {
	if r != nil && !r.done {
		_ = r.w.Discard()
	}
}

// add draws one evaluated image; the first failure is kept and ends the drawing.
func (r *evalReport) add(res evaluate.ImageResult) {
	if r == nil || r.err != nil {
		return
	}
	name := res.Item.Image
	if rel, err := filepath.Rel(r.root, name); err == nil {
		name = rel
	}
	r.err = r.w.Add(gallery.Item{Name: name, Class: res.Item.Action, Object: res.Item.Object, Scores: res.Scores},
		res.RGB, res.GT, res.Maps)
}

// finish writes the page of an evaluation.
func (r *evalReport) finish(c *cli.Context, dataset string, ts *data.TestSet, dev torch.Device) error {
	if r == nil {
		return nil
	}
	if r.err != nil {
		return fmt.Errorf("--report: %w", r.err)
	}
	info, err := commandFields(c)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	info = append(info,
		gallery.Field{Key: "dataset", Value: dataset},
		gallery.Field{Key: "data root", Value: ts.Root},
		gallery.Field{Key: "test images", Value: fmt.Sprintf("%d evaluated of %d", r.w.Len(), len(ts.Items))})
	info = append(info, gallery.RunFields(dev, time.Now())...)
	p := gallery.Page{Title: "affgd eval: " + dataset, Info: info, Config: flagConfig(c), Classes: ts.Divide.Classes()}
	if err := r.w.Finish(p); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	r.done = true
	fmt.Fprintf(os.Stderr, "report: %s\n", filepath.Join(r.w.Dir(), gallery.IndexFile))
	return nil
}

// finishPredictReport writes the page of a prediction (nothing without --report).
func finishPredictReport(c *cli.Context, w *gallery.Writer, div data.Divide, dev torch.Device) error {
	if w == nil {
		return nil
	}
	info, err := commandFields(c)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	info = append(info, gallery.Field{Key: "class list", Value: string(div)}, gallery.Field{Key: "action", Value: c.String("action")})
	info = append(info, gallery.RunFields(dev, time.Now())...)
	if err := w.Finish(gallery.Page{Title: "affgd predict: " + c.String("action"), Info: info, Config: flagConfig(c)}); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "report: %s\n", filepath.Join(w.Dir(), gallery.IndexFile))
	return nil
}
