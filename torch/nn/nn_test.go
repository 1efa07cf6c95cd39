package nn_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

func read(t *testing.T, name string) *nn.File {
	t.Helper()
	f, err := nn.ReadFile(filepath.Join(testref.Dir(t, "nn"), name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// equalBits fails unless a and b have the same dtype, shape and bytes.
func equalBits(t *testing.T, what string, a, b *torch.Tensor) {
	t.Helper()
	if a.DType() != b.DType() || !slices.Equal(a.Shape(), b.Shape()) || string(a.Bytes()) != string(b.Bytes()) {
		t.Errorf("%s: %s%v differs from %s%v", what, a.DType(), a.Shape(), b.DType(), b.Shape())
	}
}

// seq is a list of modules named 0, 1, ... as nn.ModuleList.
type seq []nn.Module

func (s seq) NamedTensors() []nn.Named {
	var out []nn.Named
	for i, m := range s {
		out = append(out, nn.Prefixed(strings.TrimSpace(string(rune('0'+i))), m)...)
	}
	return out
}

// TestDefaultInitMatchesPyTorch: layers built from a generator seeded 0 hold bitwise the values
// PyTorch's default initialisation draws after torch.manual_seed(0) (same kernel, same stream).
func TestDefaultInitMatchesPyTorch(t *testing.T) {
	g, err := torch.NewGenerator(0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m := seq{
		nn.NewLinear(384, 1536, true, g),
		nn.NewLinear(1536, 384, true, g),
		nn.NewConv2d(384, 384, 3, torch.Conv2dOptions{Padding: [2]int64{1, 1}}, true, g),
		nn.NewConv2d(384, 10, 1, torch.Conv2dOptions{}, true, g),
		nn.NewLinear(8, 4, false, g),
		nn.NewConv2d(6, 4, 3, torch.Conv2dOptions{Groups: 2}, false, g),
		nn.NewLayerNorm(384, 1e-5),
		nn.NewBatchNorm2d(384),
	}
	ref := read(t, "init.pt")
	got := m.NamedTensors()
	if len(got) != len(ref.Names) {
		t.Fatalf("%d tensors, PyTorch has %d", len(got), len(ref.Names))
	}
	for i, n := range got {
		if n.Name != ref.Names[i] {
			t.Fatalf("entry %d is %q, PyTorch's is %q", i, n.Name, ref.Names[i])
		}
		equalBits(t, n.Name, n.Tensor.Detach(), ref.Tensors[n.Name])
	}
}

// TestBatchNormTrainingUpdatesTwice: two training forwards update the running statistics twice
// (momentum 0.1 each), count the batches, and eval mode uses the running statistics.
// Tolerance 1e-6 relative: the same ATen kernels as PyTorch on the same inputs.
func TestBatchNormTrainingUpdatesTwice(t *testing.T) {
	in, out := read(t, "bn_in.pt"), read(t, "bn_out.pt")
	bn := nn.NewBatchNorm2d(5)
	if err := nn.Load(bn, prefixless(in, "init."), "bn_in.pt", nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	x := in.Tensors["x"]
	var y1, y2, y3 *torch.Tensor
	err := torch.Try(func() {
		y1 = bn.Forward(x, true)
		y2 = bn.Forward(x.MulScalar(2).AddScalar(1), true)
		y3 = bn.Forward(x, false)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]*torch.Tensor{"y1": y1, "y2": y2, "y3": y3} {
		closeTo(t, name, got, out.Tensors[name], 1e-6)
	}
	for _, n := range bn.NamedTensors() {
		closeTo(t, n.Name, n.Tensor, out.Tensors["state."+n.Name], 1e-6)
	}
}

func prefixless(f *nn.File, prefix string) map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for k, v := range f.Tensors {
		if strings.HasPrefix(k, prefix) {
			out[strings.TrimPrefix(k, prefix)] = v
		}
	}
	return out
}

func closeTo(t *testing.T, what string, got, want *torch.Tensor, rel float64) {
	t.Helper()
	g, w := got.Detach().Float64s(), want.Float64s()
	if len(g) != len(w) {
		t.Fatalf("%s: %d values, want %d", what, len(g), len(w))
	}
	for i := range g {
		d := g[i] - w[i]
		if d < 0 {
			d = -d
		}
		lim := rel
		if a := w[i]; a > 1 || a < -1 {
			lim *= max(a, -a)
		}
		if d > lim {
			t.Fatalf("%s[%d] = %.9g, PyTorch %.9g", what, i, g[i], w[i])
		}
	}
}

// TestEveryFormatLoadsTheSameWeights: the same weights saved as torch.save zip, legacy, nested,
// TorchScript (float32 and float16) read back to identical tensors.
func TestEveryFormatLoadsTheSameWeights(t *testing.T) {
	ref := read(t, "small_zip.pt")
	half := read(t, "small_half.pt")
	cases := []struct {
		file, prefix, format string
		want                 *nn.File
	}{
		{"small_legacy.pt", "", "torch.save", ref},
		{"small_nested.pt", "model.", "torch.save", ref},
		{"small_script.pt", "", "torchscript", ref},
		{"small_script_half.pt", "", "torchscript", half},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f := read(t, c.file)
			if f.Format != c.format {
				t.Errorf("format %q, want %q", f.Format, c.format)
			}
			got := prefixless(f, c.prefix)
			for _, k := range c.want.Names {
				g, ok := got[k]
				if !ok {
					t.Errorf("missing %s", k)
					continue
				}
				equalBits(t, k, g, c.want.Tensors[k])
			}
		})
	}
}

// small mirrors tests/nn/gen_nn.py's Small module.
type small struct {
	proj  *nn.Linear
	norm  *nn.LayerNorm
	bnW   *nn.LayerNorm // BatchNorm1d's weight and bias, with its buffers below
	rm    *torch.Tensor
	rv    *torch.Tensor
	nbt   *torch.Tensor
	class *torch.Tensor
}

func newSmall() *small {
	return &small{
		proj: nn.NewLinear(4, 6, true, nil), norm: nn.NewLayerNorm(6, 1e-5), bnW: nn.NewLayerNorm(6, 1e-5),
		rm: torch.Zeros([]int64{6}), rv: torch.Ones([]int64{6}), nbt: torch.Zeros(nil, torch.Int64),
		class: torch.Zeros([]int64{6}),
	}
}

func (s *small) NamedTensors() []nn.Named {
	out := nn.Prefixed("proj", s.proj)
	out = append(out, nn.Prefixed("norm", s.norm)...)
	out = append(out, nn.Prefixed("bn", s.bnW)...)
	return append(out,
		nn.Named{Name: "bn.running_mean", Tensor: s.rm, Buffer: true},
		nn.Named{Name: "bn.running_var", Tensor: s.rv, Buffer: true},
		nn.Named{Name: "bn.num_batches_tracked", Tensor: s.nbt, Buffer: true},
		nn.Named{Name: "class_embedding", Tensor: s.class})
}

// TestLoadChecksEveryKey: a state dict with missing, unexpected and mis-shaped keys is refused
// with all of them listed, and the model is left unchanged; float16 weights load into float32.
func TestLoadChecksEveryKey(t *testing.T) {
	ref := read(t, "small_zip.pt")
	m := newSmall()
	if err := nn.Load(m, ref.Tensors, "small_zip.pt", nn.LoadOptions{}); err != nil {
		t.Fatalf("clean load: %v", err)
	}
	equalBits(t, "proj.weight", m.proj.Weight.Detach(), ref.Tensors["proj.weight"])

	if err := nn.Load(m, read(t, "small_half.pt").Tensors, "small_half.pt", nn.LoadOptions{}); err != nil {
		t.Fatalf("float16 load: %v", err)
	}
	if m.proj.Weight.DType() != torch.Float32 {
		t.Fatalf("float16 load changed the parameter's dtype to %s", m.proj.Weight.DType())
	}

	bad := map[string]*torch.Tensor{}
	for k, v := range ref.Tensors {
		bad[k] = v
	}
	delete(bad, "norm.bias")
	bad["extra.weight"] = torch.Zeros([]int64{2})
	bad["proj.weight"] = torch.Zeros([]int64{6, 5})
	before := m.proj.Bias.Detach().Clone().Bytes()
	bad["proj.bias"] = torch.Ones([]int64{6})
	err := nn.Load(m, bad, "bad.pt", nn.LoadOptions{})
	var sde *nn.StateDictError
	if !errors.As(err, &sde) {
		t.Fatalf("want a StateDictError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"bad.pt", "missing key(s):\n    norm.bias", "unexpected key(s):\n    extra.weight", "proj.weight: shape [6 5] in the file, [6 4] in the model"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if string(m.proj.Bias.Detach().Bytes()) != string(before) {
		t.Error("a refused load changed the model")
	}
	ignore := nn.LoadOptions{Ignore: func(k string) bool { return k == "extra.weight" }, AllowMissing: func(k string) bool { return k == "norm.bias" }}
	delete(bad, "proj.weight")
	bad["proj.weight"] = ref.Tensors["proj.weight"]
	if err := nn.Load(m, bad, "bad.pt", ignore); err != nil {
		t.Errorf("with ignore/allow-missing: %v", err)
	}
}

// TestRoundTripThroughPython: Python save → Go read → Go write → Python load gives identical
// tensors (checked by tests/nn/check_equal.py in the venv).
func TestRoundTripThroughPython(t *testing.T) {
	dir := testref.Dir(t, "nn")
	for _, name := range []string{"init.pt", "small_zip.pt", "small_half.pt", "small_legacy.pt"} {
		f := read(t, name)
		var entries []nn.Named
		for _, k := range f.Names {
			entries = append(entries, nn.Named{Name: k, Tensor: f.Tensors[k]})
		}
		out := filepath.Join(t.TempDir(), name)
		if err := nn.WriteFile(out, entries); err != nil {
			t.Fatal(err)
		}
		back, err := nn.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range f.Names {
			equalBits(t, name+":"+k, back.Tensors[k], f.Tensors[k])
		}
		py := os.Getenv("AFFGD_PYTHON")
		if py == "" {
			t.Fatal("AFFGD_PYTHON is not set: `make test` sets it to the project venv's python")
		}
		cmd := exec.Command(py, testref.Script("nn", "check_equal.py"), filepath.Join(dir, name), out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: torch.load of our file: %v\n%s", name, err, b)
		}
	}
}

// TestReadFileErrors: missing, truncated and non-checkpoint files give errors naming the file.
func TestReadFileErrors(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(testref.Dir(t, "nn"), "small_zip.pt"))
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.pt")
	os.WriteFile(trunc, src[:len(src)/2], 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a checkpoint\n"), 0o644)
	scriptTrunc := filepath.Join(dir, "script_trunc.pt")
	s, _ := os.ReadFile(filepath.Join(testref.Dir(t, "nn"), "small_script.pt"))
	os.WriteFile(scriptTrunc, s[:len(s)-100], 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "absent.pt"), "no such file"},
		{trunc, "trunc.pt"},
		{text, "notes.txt"},
		{scriptTrunc, "script_trunc.pt"},
	} {
		if _, err := nn.ReadFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.path, err, c.want)
		}
	}
}
