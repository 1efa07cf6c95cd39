package synth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
)

// shared is the default dataset, written once for the tests that only read it.
var shared struct {
	res *Result
	err error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "synth-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	o := DefaultOptions()
	o.VocabSource = vocabForTests()
	shared.res, shared.err = Write(filepath.Join(dir, "out"), o)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// vocabForTests is the tokenizer suite's copy of CLIP's vocabulary, or "" (then the default).
func vocabForTests() string {
	p := filepath.Join(testref.Root(), "tokenizer", tokenizer.VocabFileName)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func defaultResult(t *testing.T) *Result {
	t.Helper()
	if shared.err != nil {
		t.Fatalf("Write(default): %v", shared.err)
	}
	return shared.res
}

// TestLayout: every file is where METHOD §1's AGD20K layout puts it, with the counts asked for,
// every test image has its GT png (same stem and size), and the manifest lists exactly the files.
func TestLayout(t *testing.T) {
	res := defaultResult(t)
	o := DefaultOptions()
	folders := o.Objects * len(o.Actions)
	if res.Exo != folders*o.Exo || res.Ego != folders*o.Ego || res.Test != folders*o.Test || res.GT != res.Test {
		t.Errorf("counts exo %d ego %d test %d gt %d, want %d %d %d %d", res.Exo, res.Ego, res.Test, res.GT,
			folders*o.Exo, folders*o.Ego, folders*o.Test, folders*o.Test)
	}
	if res.DataRoot != filepath.Join(res.Dir, "data") || len(res.Foreign) != 0 {
		t.Errorf("DataRoot %s, foreign files %v", res.DataRoot, res.Foreign)
	}
	for _, a := range o.Actions {
		if _, err := data.Seen.Label(a); err != nil {
			t.Error(err)
		}
		if len(res.Objects[a]) != o.Objects {
			t.Errorf("%s: objects %v", a, res.Objects[a])
		}
		for _, ob := range res.Objects[a] {
			for _, c := range []struct {
				dir  string
				want int
			}{
				{"trainset/exocentric", o.Exo}, {"trainset/egocentric", o.Ego}, {"testset/egocentric", o.Test},
			} {
				got, _ := filepath.Glob(filepath.Join(res.DataRoot, "Seen", c.dir, a, ob, "*.jpg"))
				if len(got) != c.want {
					t.Errorf("%s/%s/%s: %d images, want %d", c.dir, a, ob, len(got), c.want)
				}
			}
			tests, _ := filepath.Glob(filepath.Join(res.DataRoot, "Seen", "testset", "egocentric", a, ob, "*.jpg"))
			for _, p := range tests {
				gt := filepath.Join(res.DataRoot, "Seen", "testset", "GT", a, ob, strings.TrimSuffix(filepath.Base(p), ".jpg")+".png")
				img, g := decodeJPEG(t, p), decodePNG(t, gt)
				if img.Bounds() != g.Bounds() {
					t.Errorf("%s: GT size %v, image %v", gt, g.Bounds(), img.Bounds())
				}
			}
		}
	}
	var disk []string
	filepath.WalkDir(res.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(res.Dir, p)
			if rel != ManifestName {
				disk = append(disk, rel)
			}
		}
		return nil
	})
	sort.Strings(disk)
	var m manifest
	b, err := os.ReadFile(filepath.Join(res.Dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(disk, res.Files) || !reflect.DeepEqual(m.Files, res.Files) {
		t.Errorf("files on disk (%d), Result.Files (%d) and the manifest (%d) differ", len(disk), len(res.Files), len(m.Files))
	}
	for _, w := range []string{res.DINO, res.CLIP, res.Vocab} {
		if _, err := os.Stat(w); err != nil {
			t.Errorf("weights: %v", err)
		}
	}
}

// TestDeterministic: the same options give byte-identical folders (images, masks, weights,
// manifest); another seed gives other images and weights.
func TestDeterministic(t *testing.T) {
	res := defaultResult(t)
	o := DefaultOptions()
	o.VocabSource = vocabForTests()
	again, err := Write(filepath.Join(t.TempDir(), "again"), o)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := hashFolder(t, res.Dir), hashFolder(t, again.Dir); a != b {
		t.Errorf("two writes with seed 0 differ: %s vs %s", a, b)
	}
	o.Seed = 1
	other, err := Write(filepath.Join(t.TempDir(), "other"), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{res.Files[0], filepath.Join("weights", DINOFile), filepath.Join("weights", CLIPFile)} {
		if hashFile(t, filepath.Join(res.Dir, rel)) == hashFile(t, filepath.Join(other.Dir, rel)) {
			t.Errorf("%s is the same with seeds 0 and 1", rel)
		}
	}
}

// TestImageStreams: an image depends only on its own key, so changing a count leaves the other
// images as they were.
func TestImageStreams(t *testing.T) {
	res := defaultResult(t)
	o := DefaultOptions()
	o.Exo, o.Ego, o.Test, o.Objects = 1, 1, 1, 1
	small, err := Write(filepath.Join(t.TempDir(), "small"), o)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rel := range small.Files {
		if strings.HasPrefix(rel, "data") {
			n++
			if hashFile(t, filepath.Join(small.Dir, rel)) != hashFile(t, filepath.Join(res.Dir, rel)) {
				t.Errorf("%s differs between 1 and %d images per folder", rel, DefaultOptions().Exo)
			}
		}
	}
	if n != 4*len(o.Actions) {
		t.Errorf("%d data files, want %d", n, 4*len(o.Actions))
	}
}

// TestMasksCoverPart: the GT png is > 0 on every pixel of the part (redrawn from the same stream),
// reaches 255, and most of its mass lies on the part. The part is the
// action's evidence and the method's target, so the GT must be that region, softened.
func TestMasksCoverPart(t *testing.T) {
	res := defaultResult(t)
	o := DefaultOptions()
	minFrac := 1.0
	for ai, a := range o.Actions {
		for j, ob := range res.Objects[a] {
			spec := newObjectSpec(o.Seed, a, j, partStyles[ai])
			for i := 0; i < o.Test; i++ {
				sc := render(o.Seed, a, ob, spec, kindTest, i, o.Size)
				gt := decodePNG(t, filepath.Join(res.DataRoot, "Seen", "testset", "GT", a, ob, fmt.Sprintf("%s_test_%03d.png", ob, i)))
				part := sc.c.mask(layerPart)
				var on, total, uncovered, partPix int
				var mx uint8
				for p, v := range gt.Pix {
					total += int(v)
					mx = max(mx, v)
					if part[p] == 1 {
						partPix++
						on += int(v)
						if v == 0 {
							uncovered++
						}
					}
				}
				name := fmt.Sprintf("%s/%s #%d", a, ob, i)
				if partPix < 100 {
					t.Errorf("%s: the part has only %d visible pixels", name, partPix)
				}
				if uncovered > 0 || mx != 255 {
					t.Errorf("%s: GT is 0 on %d of %d part pixels, maximum %d", name, uncovered, partPix, mx)
				}
				f := float64(on) / float64(total)
				if f < 0.6 {
					t.Errorf("%s: only %.2f of the GT mass lies on the part", name, f)
				}
				minFrac = min(minFrac, f)
			}
		}
	}
	t.Logf("smallest share of the GT mass on the part: %.3f", minFrac)
}

// TestImageSizes: each image's longer side lies in [2/3·Size, Size] and its aspect in [0.7, 1].
func TestImageSizes(t *testing.T) {
	spec := newObjectSpec(3, "hold", 0, partStyles[0])
	for _, size := range []int{MinSize, 128, 192, 300} {
		for k := kindExo; k <= kindTest; k++ {
			for i := 0; i < 4; i++ {
				sc := render(3, "hold", "mug", spec, k, i, size)
				long, short := max(sc.c.w, sc.c.h), min(sc.c.w, sc.c.h)
				if float64(long) < float64(size)*2/3-1 || long > size || float64(short) < 0.7*float64(long)-1 {
					t.Errorf("size %d %s #%d: %d×%d", size, k, i, sc.c.w, sc.c.h)
				}
			}
		}
	}
}

// TestPartStyles: every action style is distinct in colour, so the parts tell the actions apart.
func TestPartStyles(t *testing.T) {
	if len(partStyles) != MaxActions {
		t.Fatalf("%d part styles, MaxActions %d", len(partStyles), MaxActions)
	}
	for i, a := range partStyles {
		for _, b := range partStyles[:i] {
			d := 0.0
			for k := range 3 {
				d += (a.c1[k] - b.c1[k]) * (a.c1[k] - b.c1[k])
			}
			if d < 60*60 {
				t.Errorf("part styles %q and %q have close main colours", a.name, b.name)
			}
		}
	}
}

// TestWeightsLoad: our loaders read the backbones with the tiny architectures, and they run on a
// 224×224 input: DINO keys (1, 196, 384), CLIP dense features (1, 196, 64) and text (2, 64); the
// copied vocabulary loads.
func TestWeightsLoad(t *testing.T) {
	res := defaultResult(t)
	vit, err := dino.Load(res.DINO)
	if err != nil {
		t.Fatal(err)
	}
	defer vit.Free()
	want := TinyDINO()
	if got := vit.Cfg; got.EmbedDim != want.EmbedDim || got.Depth != want.Depth || got.Heads != want.Heads ||
		got.PatchSize != want.PatchSize || got.ImgSize != want.ImgSize || got.Hidden() != want.Hidden() {
		t.Errorf("DINO config %+v, want %+v", got, want)
	}
	cm, err := clip.Load(res.CLIP)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Free()
	if cm.Config != TinyCLIP() {
		t.Errorf("CLIP config %v, want %v", cm.Config, TinyCLIP())
	}
	tok, err := tokenizer.Load(res.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	err = torch.WithScope(func(s *torch.Scope) {
		x := torch.Zeros([]int64{1, 3, 224, 224})
		out, err := vit.Features(x)
		if err != nil {
			t.Fatal(err)
		}
		dense, err := cm.DenseFeatures(x)
		if err != nil {
			t.Fatal(err)
		}
		text, err := cm.EncodePrompts(tok, []string{tokenizer.AffordancePrompt("hold"), tokenizer.ExoPrompt("pour")})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			got  []int64
			want string
		}{{"DINO keys", out.Key.Shape(), "[1 196 384]"}, {"CLIP dense", dense.Shape(), "[1 196 64]"}, {"CLIP text", text.Shape(), "[2 64]"}} {
			if fmt.Sprint(c.got) != c.want {
				t.Errorf("%s shape %v, want %s", c.name, c.got, c.want)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPython: the Python side reads the folder (tests/synth/check_synth.py): torch.load and the
// reference DINO, torch.jit.load and open_clip.load_openai_model, open_clip's tokenizer with the
// copied vocabulary, and PIL on every image and mask.
func TestPython(t *testing.T) {
	res := defaultResult(t)
	py := os.Getenv("AFFGD_PYTHON")
	if py == "" {
		t.Fatal("AFFGD_PYTHON is not set: `make test` sets it to the project venv's python")
	}
	out, err := exec.Command(py, testref.Script("synth", "check_synth.py"), res.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("check_synth.py: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	line = line[strings.LastIndex(line, "\n")+1:]
	var counts map[string]any
	if err := json.Unmarshal([]byte(line), &counts); err != nil {
		t.Fatalf("check_synth.py output %q: %v", out, err)
	}
	for k, want := range map[string]int{"exocentric": res.Exo, "egocentric": res.Ego, "test": res.Test, "gt": res.GT} {
		if v, _ := counts[k].(float64); int(v) != want {
			t.Errorf("python counted %s = %v, want %d", k, counts[k], want)
		}
	}
	if counts["vocab"] != true {
		t.Errorf("python did not load the vocabulary: %s", line)
	}
}

// TestOptionErrors: each bad option gives one error naming it and what is expected.
func TestOptionErrors(t *testing.T) {
	mod := func(f func(*Options)) Options { o := DefaultOptions(); f(&o); return o }
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no actions", mod(func(o *Options) { o.Actions = nil }), "no actions"},
		{"unknown action", mod(func(o *Options) { o.Actions = []string{"hold", "fly"} }), `action "fly" is not in the seen class list`},
		{"wrong case", mod(func(o *Options) { o.Actions = []string{"Hold"} }), `action "Hold" is not in the seen class list`},
		{"repeat", mod(func(o *Options) { o.Actions = []string{"pour", "hold", "pour"} }), `action "pour" is listed twice`},
		{"too many actions", mod(func(o *Options) { o.Actions = data.Seen.Classes()[:MaxActions+1] }), "at most 8 are supported"},
		{"objects 0", mod(func(o *Options) { o.Objects = 0 }), "objects per action must be between 1 and 6, got 0"},
		{"objects 7", mod(func(o *Options) { o.Objects = 7 }), "objects per action must be between 1 and 6, got 7"},
		{"exo -1", mod(func(o *Options) { o.Exo = -1 }), "exocentric images per folder must be between 1 and 1000, got -1"},
		{"ego 0", mod(func(o *Options) { o.Ego = 0 }), "egocentric images per folder must be between 1 and 1000, got 0"},
		{"test 5000", mod(func(o *Options) { o.Test = 5000 }), "test images per folder must be between 1 and 1000, got 5000"},
		{"size 10", mod(func(o *Options) { o.Size = 10 }), "image size must be between 64 and 1024 px, got 10"},
		{"size 4096", mod(func(o *Options) { o.Size = 4096 }), "got 4096"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			_, err := Write(dir, c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "synth: ") {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("the output folder was created for bad options")
			}
		})
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("default options: %v", err)
	}
}

// TestOutputFolder: an existing non-empty folder is refused without Force; with Force the files of
// the earlier manifest go and other files stay (reported as foreign when under data/); a file or a
// path below a file is refused with a clear message.
func TestOutputFolder(t *testing.T) {
	small := DefaultOptions()
	small.Actions, small.Objects, small.Exo, small.Ego, small.Test = []string{"hold", "pour"}, 1, 3, 1, 1
	small.VocabSource = vocabForTests()

	root := t.TempDir()
	file := filepath.Join(root, "afile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir, want string
	}{
		{"a file", file, "is a file, not a folder"},
		{"below a file", filepath.Join(file, "sub"), "as the output folder"},
		{"empty path", "", "no output folder"},
	} {
		if _, err := Write(c.dir, small); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}

	dir := filepath.Join(root, "out")
	if _, err := Write(dir, small); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "notes.txt")
	stray := filepath.Join(dir, "data", "Seen", "trainset", "exocentric", "hold", "extra.jpg")
	for _, p := range []string{mine, stray} {
		if err := os.WriteFile(p, []byte("user file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Write(dir, small); err == nil || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty folder without Force: error %v", err)
	}
	again := small
	again.Force, again.Actions, again.Exo = true, []string{"cut_with"}, 2
	res, err := Write(dir, again)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*(3+1+1+1) + 3; res.Removed != want { // 2 folders × 6 files, 3 weights files
		t.Errorf("removed %d earlier files, want %d", res.Removed, want)
	}
	for _, p := range []string{mine, stray} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a file synth did not write was removed: %v", err)
		}
	}
	if rel, _ := filepath.Rel(dir, stray); !reflect.DeepEqual(res.Foreign, []string{rel}) {
		t.Errorf("foreign files %v, want [%s]", res.Foreign, rel)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "Seen", "trainset", "exocentric", "pour")); err == nil {
		t.Errorf("the earlier action's folders were left behind")
	}
	exo, _ := filepath.Glob(filepath.Join(res.DataRoot, "Seen", "trainset", "exocentric", "*", "*", "*.jpg"))
	if len(exo) != 2 {
		t.Errorf("%d exocentric images after the forced rewrite, want 2: %v", len(exo), exo)
	}

	bad := filepath.Join(root, "bad")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, ManifestName), []byte(`{"files": ["../afile"]}`), 0o644)
	force := small
	force.Force = true
	if _, err := Write(bad, force); err == nil || !strings.Contains(err.Error(), "outside the folder") {
		t.Errorf("manifest pointing outside: error %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("a file outside the folder was removed: %v", err)
	}
}

// TestSheet: the contact sheet is a PNG with one row per ACTION/OBJECT folder and five columns.
func TestSheet(t *testing.T) {
	res := defaultResult(t)
	path := filepath.Join(t.TempDir(), "sheet.png")
	if err := res.Sheet(path); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, path)
	o := DefaultOptions()
	if want := image.Rect(0, 0, 5*SheetCell, len(o.Actions)*o.Objects*SheetCell); img.Bounds() != want {
		t.Errorf("sheet %v, want %v", img.Bounds(), want)
	}
	if p := os.Getenv("SYNTH_SHEET"); p != "" {
		if err := res.Sheet(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestObjectNames: known actions get plausible names, the rest object_N, always distinct.
func TestObjectNames(t *testing.T) {
	for _, c := range []struct {
		action string
		n      int
		want   []string
	}{
		{"hold", 2, []string{"mug", "bat"}},
		{"beat", 2, []string{"object_1", "object_2"}},
		{"pour", 6, []string{"kettle", "jug", "teapot", "carafe", "pitcher", "can"}},
	} {
		if got := ObjectNames(c.action, c.n); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ObjectNames(%q, %d) = %v, want %v", c.action, c.n, got, c.want)
		}
	}
	for a, names := range objectNames {
		if len(names) < MaxObjects {
			t.Errorf("%s has %d names, fewer than MaxObjects", a, len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Errorf("%s: name %q twice", a, n)
			}
			seen[n] = true
		}
	}
}

func decodeJPEG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func decodePNG(t *testing.T, path string) *image.Gray {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if g, ok := img.(*image.Gray); ok {
		return g
	}
	g := image.NewGray(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			g.Set(x, y, img.At(x, y))
		}
	}
	return g
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// hashFolder hashes every file's relative path and bytes, in path order.
func hashFolder(t *testing.T, dir string) string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	h := sha256.New()
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%s\x00", rel, hashFile(t, p))
	}
	return fmt.Sprintf("%x (%d files)", h.Sum(nil), len(files))
}
