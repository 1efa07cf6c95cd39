// Package gallery writes affgd's HTML reports: a folder with index.html and the pictures it
// shows, a static page that opens from the file system with no server and no network (inline CSS
// and a little plain JavaScript). `affgd eval --report DIR`, the best epoch of `affgd train` with
// `report: true`, and `affgd predict --report DIR` write one.
//
// An evaluation's page holds the run's description (configuration, weights with their size and
// SHA-256, affgd's commit, date, device), the KLD/SIM/NSS table of every map overall and per
// class (sortable by any column), the worst images overall, and per class a grid of its test
// images sorted worst-first by the KLD of a chosen map. Each tile is a strip of panels — the
// image, the GT overlay, one overlay per map (report.Overlay's jet overlay, as predict draws
// it) — with its figures; clicking it shows it large. A prediction's page is the same gallery
// without GT and figures.
//
// A report folder carries the marker file MarkerFile: Create writes into a new or empty folder,
// or over an earlier report, and refuses any other existing folder.
package gallery

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
)

// Files and folders of a report.
const (
	MarkerFile = ".affgd-report" // marks a folder as a report affgd wrote
	IndexFile  = "index.html"
	ImageDir   = "img" // img/NNNNN.jpg (grid strip) and img/NNNNN_l.jpg (enlarged strip)
	// WorstN is how many images the "worst overall" section of an evaluation shows.
	WorstN = 20
)

const markerText = "This folder is a report written by affgd (index.html and img/). affgd may overwrite it.\n"

// Options describe a report's pictures.
type Options struct {
	Maps     []string // the maps drawn and scored, in display order; nil = cam, ree, rem
	OrderMap string   // the map whose KLD orders the grids when the page opens; "" = ree (or the first map)
	GT       bool     // the images have GT masks and figures (an evaluation); false: a prediction
	Alpha    float64  // heat map opacity of the overlays; 0 = 0.5, predict's default
}

// Item is one image of a report.
type Item struct {
	Name   string                 // what the tile shows: the image's path (relative to the data root, say)
	Class  string                 // its action class
	Object string                 // its object class, when known
	Scores map[string]data.Scores // per map; required when Options.GT
}

// entry is an added image and its pictures.
type entry struct {
	Item
	index        int
	thumb, large string // paths relative to the report folder
}

// Writer writes one report: Create, Add each image, then Finish (or Discard). Its methods are
// for one goroutine; the pictures are drawn by a goroutine of its own, beside the caller (an
// evaluation goes on while the previous image is drawn), at most drawAhead images behind.
type Writer struct {
	dir     string
	o       Options
	entries []entry
	done    bool

	jobs    chan job // to the drawing goroutine
	stopped bool     // jobs is closed and the drawing goroutine has ended
	drawn   sync.WaitGroup
	mu      sync.Mutex
	err     error // the first drawing failure
}

// drawAhead bounds the images waiting to be drawn (their pixels and maps are held meanwhile).
const drawAhead = 4

// job is one image to draw: CPU copies of its GT and maps, outside every torch scope, freed by
// the drawing goroutine.
type job struct {
	e    entry
	img  data.Image
	gt   *torch.Tensor
	maps []*torch.Tensor
}

func (j job) free() {
	j.gt.Free()
	for _, m := range j.maps {
		m.Free()
	}
}

// Create prepares dir for a report: it creates the folder (and its parents) if missing; an
// existing folder must be empty or hold an earlier report (its marker file), whose index.html
// and pictures are removed first. Any other existing folder or file is refused, naming it.
func Create(dir string, o Options) (*Writer, error) {
	if dir == "" {
		return nil, fmt.Errorf("report folder: empty path")
	}
	if o.Maps == nil {
		o.Maps = []string{"cam", "ree", "rem"}
	}
	if len(o.Maps) == 0 {
		return nil, fmt.Errorf("report %s: no map to draw", dir)
	}
	if o.OrderMap == "" {
		o.OrderMap = o.Maps[0]
		for _, m := range o.Maps {
			if m == "ree" {
				o.OrderMap = m
			}
		}
	}
	if !contains(o.Maps, o.OrderMap) {
		return nil, fmt.Errorf("report %s: order map %q is not one of the maps %s", dir, o.OrderMap, strings.Join(o.Maps, ", "))
	}
	if o.Alpha == 0 {
		o.Alpha = 0.5
	}
	if !(o.Alpha > 0 && o.Alpha <= 1) {
		return nil, fmt.Errorf("report %s: overlay opacity %v, want (0, 1]", dir, o.Alpha)
	}
	if err := prepare(dir); err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, o: o, jobs: make(chan job, drawAhead)}
	w.drawn.Add(1)
	go w.drawLoop()
	return w, nil
}

// drawLoop draws the queued images until the queue closes; after a failure it only frees them.
func (w *Writer) drawLoop() {
	defer w.drawn.Done()
	for j := range w.jobs {
		if w.failure() == nil {
			if err := w.draw(j); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		j.free()
	}
}

// failure is the first drawing failure so far, or nil.
func (w *Writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// stop closes the queue and waits for the drawing goroutine; it returns the first failure.
func (w *Writer) stop() error {
	if !w.stopped {
		w.stopped = true
		close(w.jobs)
		w.drawn.Wait()
	}
	return w.failure()
}

// IsReport reports whether dir holds the marker of an affgd report.
func IsReport(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, MarkerFile))
	return err == nil && st.Mode().IsRegular()
}

// prepare makes dir an empty report folder with its marker (see Create).
func prepare(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("report folder: %w", err)
		}
	case err != nil:
		return fmt.Errorf("report folder: %w", err)
	case !st.IsDir():
		return fmt.Errorf("report folder %s exists and is not a folder", dir)
	default:
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("report folder: %w", err)
		}
		if len(entries) > 0 && !IsReport(dir) {
			return fmt.Errorf("report folder %s exists and is not an affgd report (it holds %s and no %s): choose a new or empty folder",
				dir, entries[0].Name(), MarkerFile)
		}
		// An earlier report: the page first, so that no page points at half-replaced pictures.
		for _, name := range []string{IndexFile, ImageDir} {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("report folder %s: removing the earlier report: %w", dir, err)
			}
		}
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, MarkerFile), []byte(markerText)); err != nil {
		return fmt.Errorf("report folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ImageDir), 0o755); err != nil {
		return fmt.Errorf("report folder: %w", err)
	}
	return nil
}

// Dir is the report's folder.
func (w *Writer) Dir() string { return w.dir }

// Len is the number of images added.
func (w *Writer) Len() int { return len(w.entries) }

// Add queues one image for drawing: img is the decoded image, gt its GT mask as the png's grey
// values ((H, W) uint8, any device; nil exactly when the report has no GT), maps the image's heat
// maps by name ((h, w) floating point of any range, any device), one for each of Options.Maps.
// Add copies gt and maps (the caller may free them when it returns) and keeps img's pixels until
// the image is drawn, on the writer's own goroutine. Bad input is refused at once; a failure to
// draw or write is returned by a later Add or by Finish.
func (w *Writer) Add(it Item, img data.Image, gt *torch.Tensor, maps map[string]*torch.Tensor) error {
	if w.done {
		return fmt.Errorf("report %s: Add after Finish", w.dir)
	}
	if it.Class == "" {
		return fmt.Errorf("report %s: %s: empty class name", w.dir, it.Name)
	}
	if w.o.GT != (gt != nil) {
		return fmt.Errorf("report %s: %s: a GT mask is required exactly when the report shows GT (GT %v, mask given %v)", w.dir, it.Name, w.o.GT, gt != nil)
	}
	if w.o.GT {
		for _, m := range w.o.Maps {
			if _, ok := it.Scores[m]; !ok {
				return fmt.Errorf("report %s: %s: no %s figures", w.dir, it.Name, m)
			}
		}
	}
	ms := make([]*torch.Tensor, len(w.o.Maps))
	for i, m := range w.o.Maps {
		if ms[i] = maps[m]; ms[i] == nil {
			return fmt.Errorf("report %s: %s: no %s map", w.dir, it.Name, m)
		}
	}
	e := entry{Item: it, index: len(w.entries)}
	e.thumb = filepath.ToSlash(filepath.Join(ImageDir, fmt.Sprintf("%05d.jpg", e.index)))
	e.large = filepath.ToSlash(filepath.Join(ImageDir, fmt.Sprintf("%05d_l.jpg", e.index)))
	if err := w.failure(); err != nil {
		return err
	}
	if img.W <= 0 || img.H <= 0 || len(img.Pix) != 3*img.W*img.H {
		return fmt.Errorf("report %s: %s: image of %d×%d with %d bytes, want %d", w.dir, it.Name, img.W, img.H, len(img.Pix), 3*img.W*img.H)
	}
	j := job{e: e, img: img}
	err := torch.NoGradScope(func(_ *torch.Scope) {
		if gt != nil {
			if gt.Dim() != 2 || gt.Size(0) != int64(img.H) || gt.Size(1) != int64(img.W) {
				torch.Fail("gallery", "GT mask of shape %v for an image of %d×%d", gt.Shape(), img.W, img.H)
			}
			j.gt = torch.Escape(gt.To(torch.CPU).Clone())
		}
		for _, m := range ms {
			j.maps = append(j.maps, torch.Escape(m.To(torch.CPU).Clone()))
		}
	})
	if err != nil {
		j.free()
		return fmt.Errorf("report %s: %s: %w", w.dir, it.Name, err)
	}
	w.jobs <- j
	w.entries = append(w.entries, e)
	return nil
}

// draw writes the two strips of one image (on the drawing goroutine).
func (w *Writer) draw(j job) error {
	err := torch.NoGradScope(func(_ *torch.Scope) {
		rgb, err := rgbTensor(j.img)
		if err != nil {
			torch.Fail("gallery", "%v", err)
		}
		g := j.gt
		// The large panels from the image, the small ones from the large (cheaper than twice from
		// a full-size photo, and the same picture).
		for _, pic := range []struct {
			path      string
			box, qual int
		}{{j.e.large, LargeBox, largeQual}, {j.e.thumb, ThumbBox, thumbQual}} {
			rgb, g = scaled(rgb, g, pic.box)
			st, err := strip(rgb, g, j.maps, pic.box, w.o.Alpha)
			if err != nil {
				torch.Fail("gallery", "%v", err)
			}
			// Atomic but not synced one by one: Finish syncs them all at once before the page.
			path := filepath.Join(w.dir, filepath.FromSlash(pic.path))
			if err := atomicfile.WriteUnsynced(path, func(f io.Writer) error { return report.EncodeJPEG(f, st, pic.qual) }); err != nil {
				torch.Fail("gallery", "writing %s: %v", path, err)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("report %s: %s: %w", w.dir, j.e.Name, err)
	}
	return nil
}

// Finish writes index.html (atomically, after every picture) from the images added and p.
func (w *Writer) Finish(p Page) error {
	if w.done {
		return fmt.Errorf("report %s: finished already", w.dir)
	}
	if err := w.stop(); err != nil { // every picture drawn
		return err
	}
	html, err := w.render(p)
	if err != nil {
		return fmt.Errorf("report %s: %w", w.dir, err)
	}
	if err := atomicfile.SyncFS(w.dir); err != nil { // the pictures, before the page that shows them
		return fmt.Errorf("report %s: %w", w.dir, err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(w.dir, IndexFile), html); err != nil {
		return fmt.Errorf("report %s: %w", w.dir, err)
	}
	w.done = true
	return nil
}

// Close discards an unfinished report (see Discard) and does nothing after Finish; callers defer
// it so that a failed run leaves no half-drawn report. A nil writer is a no-op.
func (w *Writer) Close() {
	if w != nil && !w.done {
		_ = w.Discard()
	}
}

// Discard removes what the writer wrote (the pictures, the page and the marker), and the folder
// itself when nothing else is left in it; a folder without the marker is left alone. A nil writer
// is a no-op.
func (w *Writer) Discard() error {
	if w == nil {
		return nil
	}
	w.done = true
	_ = w.stop()
	if !IsReport(w.dir) {
		return nil
	}
	for _, name := range []string{IndexFile, ImageDir, MarkerFile} {
		if err := os.RemoveAll(filepath.Join(w.dir, name)); err != nil {
			return fmt.Errorf("report %s: %w", w.dir, err)
		}
	}
	if entries, err := os.ReadDir(w.dir); err == nil && len(entries) == 0 {
		_ = os.Remove(w.dir)
	}
	return nil
}

// Promote moves the report in folder from to folder to, replacing an earlier report there: to
// must be missing or a report itself (never another folder). The trainer writes each epoch's
// report beside the last and promotes the best epoch's.
func Promote(from, to string) error {
	if !IsReport(from) {
		return fmt.Errorf("report %s: not a report folder (no %s)", from, MarkerFile)
	}
	old := ""
	if _, err := os.Stat(to); err == nil {
		if !IsReport(to) {
			return fmt.Errorf("report folder %s exists and is not an affgd report (no %s): move it away", to, MarkerFile)
		}
		old = to + ".old"
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := os.Rename(to, old); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("report folder: %w", err)
	}
	if err := os.Rename(from, to); err != nil {
		if old != "" {
			_ = os.Rename(old, to)
		}
		return fmt.Errorf("report: %w", err)
	}
	if old != "" {
		_ = os.RemoveAll(old)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
