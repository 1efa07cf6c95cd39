// Package synth writes affgd's embedded default: a small procedurally drawn dataset in the AGD20K
// layout and tiny random-weight backbones in the published formats, so that `affgd train`,
// `affgd eval` and `affgd predict` run end to end in minutes on a laptop, without downloads.
//
// # The dataset
//
// Write draws, for each chosen action (default hold, cut_with, drink_with, pour — names from the
// AGD20K-Seen list) and each of its objects (default 2 per action):
//
//   - exocentric training images (Seen/trainset/exocentric/ACTION/OBJECT): the object over a
//     cluttered background with a skin-coloured hand (palm, four fingers, thumb, an arm with a
//     sleeve leaving the image) on the object's affordance part;
//   - egocentric training images (Seen/trainset/egocentric/...): the object alone, larger;
//   - egocentric test images (Seen/testset/egocentric/...) and their ground truth
//     (Seen/testset/GT/ACTION/OBJECT/NAME.png, same stem): an 8-bit grey heatmap, the part's
//     visible pixels blurred with a Gaussian and scaled to a maximum of 255, like AGD20K's soft
//     masks. GT > 0 on every pixel of the part.
//
// An object is a body plus one part. Bodies look alike across all actions: neutral colours drawn
// per image, gentle shading, one of three outlines chosen by the object's index (so every outline
// occurs under every action). The part carries the action: each action gets its own saturated
// colour, texture (stripes, checker, dots or plain) and outline (bar, blade, disc, block) —
// partStyles, by the action's position in Options.Actions. Where the part sits varies per object
// (at the body's end or on its side, with its own proportions and usual orientation) and per image
// (rotation, scale, position, image size and aspect). Hands, bodies, clutter and backgrounds come
// from the same distributions for every action.
//
// # Why the method can learn it with random backbones
//
// The classifier only sees image-level action labels; its class activation map (the `cam` map)
// lands where the evidence for the label is. Here the part is the only evidence: everything else
// in an image is drawn independently of the action. The part's cues are strong and local — a
// colour and a texture period that a 16×16 patch holds whole, over a region two to four patches
// across at 224 px — so even a random patch embedding (the tiny DINO below has a single block,
// whose keys are a per-patch function of the pixels and position) maps part patches of one action
// to features unlike those of the other actions and of bodies, hands and clutter. Training the head
// on these labels therefore raises the label's CAM on the part, which is where the ground truth is.
//
// # The backbones
//
// DIR/weights/dino_tiny.pth is a DINO ViT in DINO's published state-dict format (TinyDINO: width
// 384 and 6 heads as the head and the saliency need, one block, patch 16, positions for 224×224;
// the MLP is one width wide — the method never uses the last block's MLP). DIR/weights/clip_tiny.pt
// is a CLIP ViT in OpenAI's TorchScript release format (TinyCLIP). Both have random weights drawn
// from the seed. CLIP's text side needs the full 49408-token vocabulary, so its token embedding
// makes most of that file (12.6 MB at width 64). The CLIP tokenizer's vocabulary
// (bpe_simple_vocab_16e6.txt.gz) is written next to them: Options.VocabSource, $AFFGD_BPE_VOCAB, or
// the copy embedded in affgd.
//
// Everything is deterministic: the same Options (seed included) give byte-identical files. Each
// image has its own random stream keyed by its action, object, kind and index, so changing a count
// does not change the other images.
package synth

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/tokenizer"
)

// Limits of the options, checked by Options.Validate.
const (
	MaxObjects   = 6    // objects per action
	MaxImages    = 1000 // images per folder and kind
	MinSize      = 64   // smallest Options.Size
	MaxSize      = 1024 // largest Options.Size
	JPEGQuality  = 95   // quality of every written JPEG
	ManifestName = "synth.json"
)

// File names of the backbones and the vocabulary inside DIR/weights.
const (
	DINOFile  = "dino_tiny.pth"
	CLIPFile  = "clip_tiny.pt"
	VocabFile = tokenizer.VocabFileName
)

// Options say what Write draws.
type Options struct {
	Seed    uint64   `json:"seed"`    // everything is a function of the seed
	Actions []string `json:"actions"` // action names from the AGD20K-Seen list, at most MaxActions, no repeats
	Objects int      `json:"objects"` // objects per action, 1..MaxObjects
	Exo     int      `json:"exo"`     // exocentric training images per ACTION/OBJECT folder
	Ego     int      `json:"ego"`     // egocentric training images per folder
	Test    int      `json:"test"`    // egocentric test images (each with its GT png) per folder
	Size    int      `json:"size"`    // longer image side at most; each image's is drawn in [2/3·Size, Size]
	// Force lets Write use a non-empty folder: the files listed in that folder's synth.json (an
	// earlier Write's) are removed first, other files are left alone, and files at the paths Write
	// writes are overwritten.
	Force bool `json:"-"`
	// VocabSource is the CLIP vocabulary to copy into DIR/weights; "" means
	// tokenizer.DefaultVocabPath(), and when that is "" too, the copy embedded in affgd.
	VocabSource string `json:"-"`
	// FullSize writes full-size random backbones (DINO ViT-S/16, CLIP ViT-B/16, in the published
	// formats) instead of the tiny ones, for timing and device checks at the real model size.
	FullSize bool `json:"full_size,omitempty"`
}

// DefaultOptions is the embedded default dataset: 4 actions × 2 objects, 6 exocentric, 3
// egocentric and 3 test images per folder, images of 128 to 192 px, seed 0.
func DefaultOptions() Options {
	return Options{
		Actions: []string{"hold", "cut_with", "drink_with", "pour"},
		Objects: 2, Exo: 6, Ego: 3, Test: 3, Size: 192,
	}
}

// Validate reports the first bad option value, naming it and what is expected.
func (o Options) Validate() error {
	if len(o.Actions) == 0 {
		return errors.New("synth: no actions: give at least one action name from the AGD20K-Seen list")
	}
	if len(o.Actions) > MaxActions {
		return fmt.Errorf("synth: %d actions requested, at most %d are supported (one distinct part style each)", len(o.Actions), MaxActions)
	}
	seen := map[string]bool{}
	for _, a := range o.Actions {
		if _, err := data.Seen.Label(a); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		if seen[a] {
			return fmt.Errorf("synth: action %q is listed twice", a)
		}
		seen[a] = true
	}
	counts := []struct {
		name   string
		v, max int
	}{{"objects per action", o.Objects, MaxObjects}, {"exocentric images per folder", o.Exo, MaxImages},
		{"egocentric images per folder", o.Ego, MaxImages}, {"test images per folder", o.Test, MaxImages}}
	for _, c := range counts {
		if c.v < 1 || c.v > c.max {
			return fmt.Errorf("synth: %s must be between 1 and %d, got %d", c.name, c.max, c.v)
		}
	}
	if o.Size < MinSize || o.Size > MaxSize {
		return fmt.Errorf("synth: image size must be between %d and %d px, got %d", MinSize, MaxSize, o.Size)
	}
	return nil
}

// TinyDINO is the architecture of dino_tiny.pth: a ViT-S/16 cut to one block with a
// one-width MLP.
func TinyDINO() dino.Config {
	c := dino.ViTS16()
	c.Depth = 1
	c.MLPRatio = 1
	c.ImgSize = 224
	return c
}

// TinyCLIP is the architecture of clip_tiny.pt: a 2-layer ViT/16 with width 128 and a 2-layer
// text transformer of width 64, output dimension 64, positions for 224×224.
func TinyCLIP() clip.Config {
	return clip.Config{EmbedDim: 64, VisionWidth: 128, VisionLayers: 2, PatchSize: 16, GridSize: 14,
		ContextLength: 77, VocabSize: 49408, TextWidth: 64, TextLayers: 2}
}

// Result tells what Write wrote.
type Result struct {
	Dir      string // the output folder
	DataRoot string // DIR/data: the dataset root to give train/eval (holds Seen/)
	DINO     string // DIR/weights/dino_tiny.pth
	CLIP     string // DIR/weights/clip_tiny.pt
	Vocab    string // DIR/weights/bpe_simple_vocab_16e6.txt.gz
	// Objects lists each action's object folders, in Options.Actions order.
	Objects map[string][]string
	// Image counts over the whole dataset.
	Exo, Ego, Test, GT int
	// Files are the paths written, relative to Dir, sorted (also stored in DIR/synth.json).
	Files []string
	// Removed counts the files of an earlier synth.json removed under Options.Force.
	Removed int
	// Foreign lists files under DIR/data that Write did not write (they would join the dataset).
	Foreign []string
}

// manifest is DIR/synth.json.
type manifest struct {
	Tool    string   `json:"tool"`
	Options Options  `json:"options"`
	Files   []string `json:"files"`
}

// objectNames are plausible object folder names for some actions; others get object_N.
var objectNames = map[string][]string{
	"hold":       {"mug", "bat", "umbrella", "bag", "broom", "racket"},
	"cut_with":   {"knife", "scissors", "axe", "saw", "cleaver", "sickle"},
	"drink_with": {"cup", "bottle", "glass", "flask", "tumbler", "straw"},
	"pour":       {"kettle", "jug", "teapot", "carafe", "pitcher", "can"},
	"open":       {"door", "drawer", "box", "lid", "jar", "suitcase"},
	"sit_on":     {"chair", "bench", "stool", "sofa", "bed", "bicycle"},
	"stir":       {"spoon", "whisk", "ladle", "spatula", "stick", "rod"},
	"swing":      {"bat", "racket", "club", "sword", "axe", "hammer"},
}

// ObjectNames returns the object folder names of an action for n objects.
func ObjectNames(action string, n int) []string {
	out := make([]string, n)
	names := objectNames[action]
	for j := range out {
		if j < len(names) {
			out[j] = names[j]
		} else {
			out[j] = fmt.Sprintf("object_%d", j+1)
		}
	}
	return out
}

// Write draws the dataset and writes the backbones into dir (created if needed), as the package
// doc describes. dir must be empty or absent unless o.Force is set.
func Write(dir string, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("synth: no output folder given")
	}
	removed, err := prepare(dir, o.Force)
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: dir, DataRoot: filepath.Join(dir, "data"), Objects: map[string][]string{}, Removed: removed}
	w := &writer{dir: dir}

	seen := filepath.Join("data", "Seen")
	for ai, action := range o.Actions {
		names := ObjectNames(action, o.Objects)
		res.Objects[action] = names
		for j, object := range names {
			spec := newObjectSpec(o.Seed, action, j, partStyles[ai])
			for _, k := range []kind{kindExo, kindEgo, kindTest} {
				n, folder := o.Exo, filepath.Join(seen, "trainset", "exocentric", action, object)
				switch k {
				case kindEgo:
					n, folder = o.Ego, filepath.Join(seen, "trainset", "egocentric", action, object)
				case kindTest:
					n, folder = o.Test, filepath.Join(seen, "testset", "egocentric", action, object)
				}
				for i := 0; i < n; i++ {
					sc := render(o.Seed, action, object, spec, k, i, o.Size)
					stem := fmt.Sprintf("%s_%s_%03d", object, k, i)
					if err := w.file(filepath.Join(folder, stem+".jpg"), func(f io.Writer) error {
						return jpeg.Encode(f, sc.c.image(), &jpeg.Options{Quality: JPEGQuality})
					}); err != nil {
						return nil, err
					}
					switch k {
					case kindExo:
						res.Exo++
					case kindEgo:
						res.Ego++
					case kindTest:
						res.Test++
						gt := filepath.Join(seen, "testset", "GT", action, object, stem+".png")
						if err := w.file(gt, func(f io.Writer) error {
							return png.Encode(f, heatmap(sc.gt, sc.c.w, sc.c.h))
						}); err != nil {
							return nil, err
						}
						res.GT++
					}
				}
			}
		}
	}

	dinoFile, clipFile := DINOFile, CLIPFile
	if o.FullSize {
		dinoFile, clipFile = "dino_vits16.pth", "clip_vitb16.pt"
	}
	res.DINO = filepath.Join(dir, "weights", dinoFile)
	res.CLIP = filepath.Join(dir, "weights", clipFile)
	if err := os.MkdirAll(filepath.Dir(res.DINO), 0o755); err != nil {
		return nil, fmt.Errorf("synth: cannot create the weights folder: %w", err)
	}
	dcfg, ccfg := TinyDINO(), TinyCLIP()
	if o.FullSize {
		dcfg, ccfg = dino.ViTS16(), clip.ViTB16()
	}
	if err := dino.WriteRandom(res.DINO, dcfg, o.Seed+1); err != nil {
		return nil, fmt.Errorf("synth: writing the tiny DINO: %w", err)
	}
	w.files = append(w.files, filepath.Join("weights", dinoFile))
	if err := clip.WriteRandom(res.CLIP, ccfg, o.Seed+2, clip.FormatTorchScript); err != nil {
		return nil, fmt.Errorf("synth: writing the tiny CLIP: %w", err)
	}
	w.files = append(w.files, filepath.Join("weights", clipFile))
	src := o.VocabSource
	if src == "" {
		src = tokenizer.DefaultVocabPath()
	}
	rel := filepath.Join("weights", VocabFile)
	if src != "" {
		err = w.copyFile(rel, src)
	} else {
		err = w.file(rel, func(f io.Writer) error {
			_, err := f.Write(tokenizer.EmbeddedVocab())
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	res.Vocab = filepath.Join(dir, rel)

	res.Files = slices.Clone(w.files)
	sort.Strings(res.Files)
	m := manifest{Tool: "affgd synth", Options: o, Files: res.Files}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("synth: writing the manifest: %w", err)
	}
	res.Foreign, err = foreign(dir, res.Files)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// writer creates files under dir and records their relative paths.
type writer struct {
	dir   string
	files []string
}

// file creates dir/rel (and its folders) and fills it with fill.
func (w *writer) file(rel string, fill func(io.Writer) error) (err error) {
	path := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("synth: cannot create folder: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("synth: cannot write: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("synth: writing %s: %w", path, cerr)
		}
	}()
	if err := fill(f); err != nil {
		return fmt.Errorf("synth: writing %s: %w", path, err)
	}
	w.files = append(w.files, rel)
	return nil
}

// copyFile copies src to dir/rel.
func (w *writer) copyFile(rel, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("synth: cannot read the CLIP vocabulary %s: %w", src, err)
	}
	defer in.Close()
	return w.file(rel, func(f io.Writer) error {
		_, err := io.Copy(f, in)
		return err
	})
}

// prepare checks that dir can be written: absent (created), an empty folder, or — with force —
// any folder, from which the files of an earlier synth.json are removed. It returns how many
// files it removed.
func prepare(dir string, force bool) (int, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, fmt.Errorf("synth: cannot create the output folder %s: %w", dir, err)
		}
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("synth: cannot use %s as the output folder: %w", dir, err)
	case !st.IsDir():
		return 0, fmt.Errorf("synth: output %s is a file, not a folder", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("synth: output folder: %w", err)
	}
	if len(entries) > 0 && !force {
		return 0, fmt.Errorf("synth: output folder %s is not empty (it holds %s): choose a new or empty folder, or pass --force to replace the files an earlier `affgd synth` wrote there (the ones its %s lists; other files are kept)",
			dir, entries[0].Name(), ManifestName)
	}
	// Probe writability now, so an unwritable folder fails before any drawing.
	probe, err := os.CreateTemp(dir, ".synth-probe-*")
	if err != nil {
		return 0, fmt.Errorf("synth: output folder %s is not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if len(entries) == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("synth: reading the earlier manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("synth: %s in %s is not an `affgd synth` manifest (%v); remove it or choose another folder", ManifestName, dir, err)
	}
	removed := 0
	dirs := map[string]bool{}
	for _, rel := range m.Files {
		clean := filepath.Clean(rel)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			return removed, fmt.Errorf("synth: %s lists %q, a path outside the folder; refusing to remove it", ManifestName, rel)
		}
		err := os.Remove(filepath.Join(dir, clean))
		switch {
		case err == nil:
			removed++
		case !errors.Is(err, fs.ErrNotExist):
			return removed, fmt.Errorf("synth: removing an earlier file: %w", err)
		}
		for d := filepath.Dir(clean); d != "." && d != string(filepath.Separator); d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	// Remove the folders that became empty, deepest first (os.Remove keeps non-empty ones).
	list := make([]string, 0, len(dirs))
	for d := range dirs {
		list = append(list, d)
	}
	sort.Slice(list, func(i, j int) bool { return len(list[i]) > len(list[j]) })
	for _, d := range list {
		os.Remove(filepath.Join(dir, d))
	}
	return removed, nil
}

// foreign lists files under dir/data that are not in ours (relative paths).
func foreign(dir string, ours []string) ([]string, error) {
	set := map[string]bool{}
	for _, f := range ours {
		set[f] = true
	}
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, "data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if !set[rel] {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("synth: listing the dataset: %w", err)
	}
	return out, nil
}
