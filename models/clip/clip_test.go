package clip_test

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// tinyCfg and tinySeed are TINY and TINY_SEED of tests/clip/gen_clip.py. Widths are 128 so that
// both towers have two attention heads.
var tinyCfg = clip.Config{
	EmbedDim: 32, VisionWidth: 128, VisionLayers: 2, PatchSize: 16, GridSize: 4,
	ContextLength: 77, VocabSize: 1000, TextWidth: 128, TextLayers: 2,
}

const tinySeed = 11

// tol bounds |got − want| / max(1, |want|) for every element compared with PyTorch.
const tol = 1e-5

func dataPath(t testing.TB, name string) string {
	return filepath.Join(testref.Dir(t, "clip"), name)
}

func readRef(t testing.TB, name string) *nn.File {
	t.Helper()
	return readFile(t, dataPath(t, name))
}

func readFile(t testing.TB, path string) *nn.File {
	t.Helper()
	f, err := nn.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// testDevice is the device the parity tests run on ($AFFGD_TEST_DEVICE, default CPU).
func testDevice(t testing.TB) torch.Device { return testdev.Device(t) }

// load reads a model and moves it to the test device.
func load(t testing.TB, path string) *clip.Model {
	t.Helper()
	m, err := clip.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.To(testDevice(t)); err != nil {
		t.Fatal(err)
	}
	return m
}

func on(t testing.TB, x *torch.Tensor) *torch.Tensor {
	t.Helper()
	var out *torch.Tensor
	if err := torch.Try(func() { out = x.To(testDevice(t)) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// compare fails unless got and want have the same shape and every element is within tol of
// PyTorch's (relative to max(1, |want|)); it logs the largest deviation and the largest
// difference relative to max |want|.
func compare(t testing.TB, what string, got, want *torch.Tensor) {
	t.Helper()
	var g, w []float64
	var gs, ws []int64
	if err := torch.Try(func() {
		gs, ws = got.Shape(), want.Shape()
		g, w = got.To(torch.CPU).Float64s(), want.Float64s()
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gs, ws) {
		t.Fatalf("%s: shape %v, PyTorch %v", what, gs, ws)
	}
	worst, at, maxDiff, maxRef := 0.0, 0, 0.0, 0.0
	for i := range g {
		d := math.Abs(g[i] - w[i])
		if r := d / math.Max(1, math.Abs(w[i])); r > worst || math.IsNaN(r) {
			worst, at = r, i
		}
		maxDiff, maxRef = math.Max(maxDiff, d), math.Max(maxRef, math.Abs(w[i]))
	}
	if worst > tol || math.IsNaN(worst) {
		t.Errorf("%s: element %d = %.9g, PyTorch %.9g (deviation %.3g > %g)", what, at, g[at], w[at], worst, tol)
		return
	}
	t.Logf("%s %v: max deviation %.3g, max |diff|/max|ref| %.3g", what, gs, worst, maxDiff/maxRef)
}

// sameBits fails unless a and b hold identical bytes, dtype and shape.
func sameBits(t testing.TB, what string, a, b *torch.Tensor) {
	t.Helper()
	var ok bool
	if err := torch.Try(func() {
		ok = a.DType() == b.DType() && slices.Equal(a.Shape(), b.Shape()) &&
			bytes.Equal(a.To(torch.CPU).Bytes(), b.To(torch.CPU).Bytes())
	}); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Errorf("%s: %s%v and %s%v are not bitwise equal", what, a.DType(), a.Shape(), b.DType(), b.Shape())
	}
}

func scoped(t testing.TB, fn func()) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	fn()
}

// TestTinyParity: dense features at six image sizes (stored grid, bicubic resizing up, down and
// non-square, and a different grid with the stored token count) and text features equal
// PyTorch's on the released code's path, for the same weights read from OpenAI's TorchScript
// container, an open_clip state dict and a SelectiveCL checkpoint; the three give bitwise equal
// outputs.
func TestTinyParity(t *testing.T) {
	ref := readRef(t, "tiny_ref.pt")
	formats := []struct{ name, file string }{
		{"openai-torchscript", "tiny_openai.pt"},
		{"open_clip-state_dict", "tiny_state_dict.pt"},
		{"selectivecl-checkpoint", "tiny_selectivecl.pt"},
	}
	first := map[string]*torch.Tensor{}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			m := load(t, dataPath(t, f.file))
			defer m.Free()
			if m.Config != tinyCfg {
				t.Fatalf("config %+v, want %+v", m.Config, tinyCfg)
			}
			for _, name := range ref.Names {
				if !strings.HasPrefix(name, "image_") {
					continue
				}
				c := strings.TrimPrefix(name, "image_")
				got, err := m.DenseFeatures(on(t, ref.Tensors[name]))
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				compare(t, "dense "+c, got, ref.Tensors["dense_"+c])
				if prev, ok := first["dense_"+c]; ok {
					sameBits(t, "dense "+c+" vs "+formats[0].name, got, prev)
				} else {
					first["dense_"+c] = got
				}
			}
			got, err := m.EncodeText(on(t, ref.Tensors["tokens"]))
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "text", got, ref.Tensors["text"])
			if prev, ok := first["text"]; ok {
				sameBits(t, "text vs "+formats[0].name, got, prev)
			} else {
				first["text"] = got
			}
		})
	}
}

// TestNamesAndConfig: the model's state-dict names are open_clip's, in open_clip's order, and
// the configuration is read from the weights.
func TestNamesAndConfig(t *testing.T) {
	raw := readRef(t, "tiny_raw.pt")
	m, err := clip.New(tinyCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	got := m.NamedTensors()
	if len(got) != len(raw.Names) {
		t.Fatalf("%d tensors, open_clip has %d", len(got), len(raw.Names))
	}
	for i, n := range got {
		if n.Name != raw.Names[i] {
			t.Fatalf("entry %d is %q, open_clip's is %q", i, n.Name, raw.Names[i])
		}
		if !slices.Equal(n.Tensor.Shape(), raw.Tensors[n.Name].Shape()) {
			t.Errorf("%s: shape %v, open_clip %v", n.Name, n.Tensor.Shape(), raw.Tensors[n.Name].Shape())
		}
		if n.Tensor.RequiresGrad() {
			t.Errorf("%s records gradients; CLIP is frozen", n.Name)
		}
	}
	for _, c := range []clip.Config{clip.ViTB16(), tinyCfg} {
		if err := c.Validate(); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
	if c := clip.ViTB16(); c.VisionHeads() != 12 || c.TextHeads() != 8 || c.ImageSize() != 224 {
		t.Errorf("ViT-B/16: %v", c)
	}
}

// TestWriteRandomMatchesPython: WriteRandom draws bitwise the weights gen_clip.py draws from the
// same seed, writes them as OpenAI's container (float16 where OpenAI stores float16) and as an
// open_clip state dict; Python's torch.jit.load reads our TorchScript archive with the same
// entries as Python's own, and open_clip.load_openai_model builds a CLIP from it.
func TestWriteRandomMatchesPython(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ format, ref string }{
		{clip.FormatTorchScript, "tiny_openai.pt"},
		{clip.FormatStateDict, "tiny_raw.pt"},
	}
	for _, c := range cases {
		t.Run(c.format, func(t *testing.T) {
			path := filepath.Join(dir, c.format+".pt")
			if err := clip.WriteRandom(path, tinyCfg, tinySeed, c.format); err != nil {
				t.Fatal(err)
			}
			got, want := readFile(t, path), readRef(t, c.ref)
			if got.Format != want.Format {
				t.Errorf("format %s, Python's file is %s", got.Format, want.Format)
			}
			if strings.Join(got.Names, ",") != strings.Join(want.Names, ",") {
				t.Fatalf("names\n%v\nPython\n%v", got.Names, want.Names)
			}
			for _, n := range got.Names {
				sameBits(t, n, got.Tensors[n], want.Tensors[n])
			}
			if c.format == clip.FormatTorchScript {
				out, err := python(t, "check_torchscript.py", path, dataPath(t, c.ref))
				if err != nil {
					t.Fatalf("Python cannot read our TorchScript archive: %v\n%s", err, out)
				}
				t.Logf("python: %s", strings.TrimSpace(out))
			}
		})
	}
}

// python runs tests/clip/<script> with the interpreter that generated the reference data
// ($AFFGD_PYTHON when set).
func python(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	py := os.Getenv("AFFGD_PYTHON")
	if py == "" {
		b, err := os.ReadFile(dataPath(t, "python.txt"))
		if err != nil {
			t.Fatalf("no Python to check with: set AFFGD_PYTHON or regenerate the reference data (%v)", err)
		}
		py = strings.TrimSpace(string(b))
	}
	cmd := exec.Command(py, append([]string{testref.Script("clip", script)}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFormatsAgree: one random CLIP written by Go as OpenAI's float16 container and, after
// loading, re-saved as a float32 state dict gives bitwise equal features from both files.
func TestFormatsAgree(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "openai.pt")
	sd := filepath.Join(dir, "state_dict.pt")
	if err := clip.WriteRandom(ts, tinyCfg, 99, clip.FormatTorchScript); err != nil {
		t.Fatal(err)
	}
	a := load(t, ts)
	defer a.Free()
	if err := nn.WriteFile(sd, a.NamedTensors()); err != nil {
		t.Fatal(err)
	}
	b := load(t, sd)
	defer b.Free()
	scoped(t, func() {
		g, _ := torch.NewGenerator(1, torch.CPU)
		x := on(t, torch.Randn([]int64{2, 3, 96, 64}, g))
		tok := on(t, readRef(t, "tiny_ref.pt").Tensors["tokens"])
		for _, m := range []*clip.Model{a, b} {
			if m.Config != tinyCfg {
				t.Fatalf("config %+v", m.Config)
			}
		}
		fa, err := a.DenseFeatures(x)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := b.DenseFeatures(x)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, "dense features", fa, fb)
		ta, err := a.EncodeText(tok)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.EncodeText(tok)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, "text features", ta, tb)
	})
}

// TestNoGradAndScopes: features never record gradients, even under EnableGrad, and a forward
// inside a scope leaves nothing behind when the scope closes.
func TestNoGradAndScopes(t *testing.T) {
	m := load(t, dataPath(t, "tiny_openai.pt"))
	defer m.Free()
	x := on(t, torch.Ones([]int64{1, 3, 64, 64}))
	before := torch.LiveTensors()
	torch.EnableGrad(func() {
		scoped(t, func() {
			f, err := m.DenseFeatures(x)
			if err != nil {
				t.Fatal(err)
			}
			if f.RequiresGrad() {
				t.Error("dense features record gradients")
			}
		})
	})
	if after := torch.LiveTensors(); after != before {
		t.Errorf("%d live tensors before, %d after the scope closed", before, after)
	}
}

// TestBadInputs: wrong shapes, channels, sizes, dtypes and token ids give clear errors.
func TestBadInputs(t *testing.T) {
	m := load(t, dataPath(t, "tiny_openai.pt"))
	defer m.Free()
	tok, err := tokenizer.Load(dataPath(t, "bpe_simple_vocab_16e6.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	dev := testDevice(t)
	img := func(shape ...int64) func() error {
		return func() error {
			_, err := m.DenseFeatures(torch.Zeros(shape, dev))
			return err
		}
	}
	ids := func(dt torch.DType, fill float64, shape ...int64) func() error {
		return func() error {
			_, err := m.EncodeText(torch.Full(shape, fill, dt, dev))
			return err
		}
	}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"nil image", func() error { _, err := m.DenseFeatures(nil); return err }, "nil input"},
		{"3-d image", img(3, 64, 64), "must be (B, 3, H, W)"},
		{"4 channels", img(1, 4, 64, 64), "3 channels"},
		{"1 channel", img(2, 1, 64, 64), "3 channels"},
		{"height not a multiple of the patch", img(1, 3, 65, 64), "65x64 is not a positive multiple of the patch size 16"},
		{"width not a multiple of the patch", img(1, 3, 64, 72), "64x72 is not a positive multiple"},
		{"empty batch", img(0, 3, 64, 64), "empty batch"},
		{"float64 image", func() error {
			_, err := m.DenseFeatures(torch.Zeros([]int64{1, 3, 64, 64}, torch.Float64, dev))
			return err
		}, "must be float32"},
		{"nil tokens", func() error { _, err := m.EncodeText(nil); return err }, "nil tokens"},
		{"short context", ids(torch.Int64, 1, 2, 76), "tokens must be (B, 77)"},
		{"1-d tokens", ids(torch.Int64, 1, 77), "tokens must be (B, 77)"},
		{"float tokens", ids(torch.Float32, 1, 2, 77), "must be int64"},
		{"id past the vocabulary", ids(torch.Int64, 1000, 1, 77), "token ids must lie in [0, 1000)"},
		{"negative id", ids(torch.Int64, -1, 1, 77), "token ids must lie in [0, 1000)"},
		{"prompt ids past a small vocabulary", func() error {
			_, err := m.EncodePrompts(tok, []string{"an item to cut with"})
			return err
		}, "token ids must lie in [0, 1000)"},
		{"no prompts", func() error { _, err := m.EncodePrompts(tok, nil); return err }, "no texts"},
		{"nil tokenizer", func() error { _, err := m.EncodePrompts(nil, []string{"a"}); return err }, "nil tokenizer"},
		{"prompt too long", func() error {
			_, err := m.EncodePrompts(tok, []string{strings.Repeat("cut ", 80)})
			return err
		}, "clip: EncodePrompts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			scoped(t, func() { err = c.run() })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestLoadErrors: missing and truncated files, other architectures and damaged CLIPs are
// refused with errors that name the file and the problem.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := readRef(t, "tiny_state_dict.pt")
	// write saves the tiny state dict changed by edit (new tensors, or nil to delete) as name.
	write := func(name string, edit map[string]*torch.Tensor) string {
		var entries []nn.Named
		for _, n := range good.Names {
			if v, ok := edit[n]; ok {
				if v != nil {
					entries = append(entries, nn.Named{Name: n, Tensor: v})
				}
				continue
			}
			entries = append(entries, nn.Named{Name: n, Tensor: good.Tensors[n]})
		}
		for n, v := range edit {
			if _, ok := good.Tensors[n]; !ok && v != nil {
				entries = append(entries, nn.Named{Name: n, Tensor: v})
			}
		}
		p := filepath.Join(dir, name)
		if err := nn.WriteFile(p, entries); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncate := func(src, name string) string {
		b, err := os.ReadFile(dataPath(t, src))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := func(name string, entries map[string][]int64) string {
		var es []nn.Named
		for n, s := range entries {
			es = append(es, nn.Named{Name: n, Tensor: torch.Zeros(s)})
		}
		p := filepath.Join(dir, name)
		if err := nn.WriteFile(p, es); err != nil {
			t.Fatal(err)
		}
		return p
	}
	z := func(shape ...int64) *torch.Tensor { return torch.Zeros(shape) }
	cases := []struct {
		name string
		path string
		want []string
	}{
		{"missing file", filepath.Join(dir, "none.pt"), []string{"none.pt", "no such file"}},
		{"truncated TorchScript", truncate("tiny_openai.pt", "cut_openai.pt"), []string{"cut_openai.pt"}},
		{"truncated state dict", truncate("tiny_state_dict.pt", "cut_sd.pt"), []string{"cut_sd.pt"}},
		{"not a checkpoint", func() string {
			p := filepath.Join(dir, "text.pt")
			os.WriteFile(p, []byte("hello"), 0o644)
			return p
		}(), []string{"text.pt"}},
		{"DINO ViT-S/16", plain("dino.pt", map[string][]int64{"cls_token": {1, 1, 384}, "patch_embed.proj.weight": {384, 3, 16, 16}}),
			[]string{"dino.pt holds no ViT CLIP", "visual.conv1.weight"}},
		{"ResNet CLIP", plain("rn50.pt", map[string][]int64{"visual.layer1.0.conv1.weight": {64, 64, 1, 1}, "visual.attnpool.positional_embedding": {50, 2048}}),
			[]string{"rn50.pt is a ResNet CLIP"}},
		{"two CLIPs", plain("two.pt", map[string][]int64{"a.visual.conv1.weight": {64, 3, 16, 16}, "b.visual.conv1.weight": {64, 3, 16, 16}}),
			[]string{"several CLIP image towers"}},
		{"width not a multiple of 64", write("w96.pt", map[string]*torch.Tensor{"visual.conv1.weight": z(96, 3, 16, 16)}),
			[]string{"w96.pt", "unsupported architecture", "VisionWidth 96"}},
		{"4-channel conv1", write("c4.pt", map[string]*torch.Tensor{"visual.conv1.weight": z(128, 4, 16, 16)}),
			[]string{"c4.pt", "(width, 3, patch, patch)"}},
		{"non-square grid", write("grid.pt", map[string]*torch.Tensor{"visual.positional_embedding": z(19, 128)}),
			[]string{"grid.pt", "19 rows", "square patch grid"}},
		{"missing key", write("miss.pt", map[string]*torch.Tensor{"visual.ln_post.bias": nil}),
			[]string{"miss.pt", "missing key", "visual.ln_post.bias"}},
		{"missing config key", write("noproj.pt", map[string]*torch.Tensor{"text_projection": nil}),
			[]string{"noproj.pt", "missing key text_projection"}},
		{"wrong shape", write("shape.pt", map[string]*torch.Tensor{"visual.proj": z(128, 16)}),
			[]string{"shape.pt", "visual.proj: shape [128 16] in the file, [128 32] in the model"}},
		{"unexpected key", write("extra.pt", map[string]*torch.Tensor{"visual.extra": z(3)}),
			[]string{"extra.pt", "unexpected key", "visual.extra"}},
		{"block 0 missing", func() string {
			edit := map[string]*torch.Tensor{}
			for _, n := range good.Names {
				if strings.HasPrefix(n, "transformer.resblocks.0.") {
					edit[n] = nil
				}
			}
			return write("gap.pt", edit)
		}(), []string{"gap.pt", "transformer.resblocks.0 is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := clip.Load(c.path)
			if err == nil {
				m.Free()
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// TestWriterErrors: bad configurations, formats and tensor names are refused.
func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	bad := tinyCfg
	bad.TextWidth = 100
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"unknown format", func() error { return clip.WriteRandom(filepath.Join(dir, "a.pt"), tinyCfg, 1, "onnx") }, `unknown format "onnx"`},
		{"bad config", func() error { return clip.WriteRandom(filepath.Join(dir, "b.pt"), bad, 1, clip.FormatStateDict) }, "TextWidth 100 is not a multiple"},
		{"zero layers", func() error {
			c := tinyCfg
			c.VisionLayers = 0
			_, err := clip.New(c, nil)
			return err
		}, "VisionLayers must be positive"},
		{"missing directory", func() error {
			return clip.WriteRandom(filepath.Join(dir, "no", "c.pt"), tinyCfg, 1, clip.FormatTorchScript)
		}, "no such file"},
		{"duplicate tensor name", func() error {
			return torch.SaveTorchScript(filepath.Join(dir, "d.pt"), []string{"a.b", "a.b"}, []*torch.Tensor{torch.Ones([]int64{1}), torch.Ones([]int64{1})})
		}, `"a.b" given twice`},
		{"tensor and module", func() error {
			return torch.SaveTorchScript(filepath.Join(dir, "e.pt"), []string{"a.b", "a"}, []*torch.Tensor{torch.Ones([]int64{1}), torch.Ones([]int64{1})})
		}, `"a" is a tensor and also the module of "a.b"`},
		{"empty name component", func() error {
			return torch.SaveTorchScript(filepath.Join(dir, "f.pt"), []string{"a..b"}, []*torch.Tensor{torch.Ones([]int64{1})})
		}, "empty component"},
		{"names and tensors differ", func() error {
			return torch.SaveTorchScript(filepath.Join(dir, "g.pt"), []string{"a"}, nil)
		}, "1 names for 0 tensors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestMain checks $AFFGD_TEST_DEVICE first (internal/testdev): a device that cannot be used stops
// the suite with one line instead of a run on another device.
func TestMain(m *testing.M) { testdev.Main(m) }
