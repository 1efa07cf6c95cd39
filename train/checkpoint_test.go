package train

// An internal test: the atomicity check injects a failing writer through writeHook.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/torch/ptfile"
)

// Tolerance of the inference maps against PyTorch's, relative to the largest |value| of the
// reference map: both sides run the same libtorch kernels on bitwise the same weights, and the
// method suite holds the same maps (train/parity_test.go, case "infer") to the same 1e-5; the
// maps have no thresholds, so nothing can flip.
const tolCheckpointMaps = 1e-5

// released is the reference data of tests/checkpoint/gen_checkpoint.py.
type released struct {
	dir, ckpt, vocab, batch string
	keys                    []string
}

func releasedData(t *testing.T) released {
	t.Helper()
	dir := testref.Dir(t, "checkpoint")
	r := released{dir: dir, ckpt: filepath.Join(dir, "released.pt"), vocab: filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz"),
		batch: filepath.Join(dir, "batch.pt")}
	raw, err := os.ReadFile(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Keys []string }
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	r.keys = k.Keys
	return r
}

func loadReleased(t *testing.T, r released) *Model {
	t.Helper()
	m, err := Load(Files{Checkpoint: r.ckpt, Vocab: r.vocab, Divide: data.Seen})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func names(sd []nn.Named) []string {
	out := make([]string, len(sd))
	for i, n := range sd {
		out[i] = n.Name
	}
	return out
}

// compareMaps checks got against the .npy files cam, ree, rem of dir.
func compareMaps(t *testing.T, what string, got *Maps, dir string) {
	t.Helper()
	for name, g := range map[string]*torch.Tensor{"cam": got.CAM, "ree": got.REE, "rem": got.REM} {
		ref, err := npy.LoadTensor(filepath.Join(dir, name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		if gs, rs := g.Shape(), ref.Shape(); fmt.Sprint(gs) != fmt.Sprint(rs) {
			t.Errorf("%s %s: shape %v, PyTorch %v", what, name, gs, rs)
			continue
		}
		gv, rv := g.Float64s(), ref.Float64s()
		scale, worst := 0.0, 0.0
		for i := range rv {
			scale = math.Max(scale, math.Abs(rv[i]))
			if d := math.Abs(gv[i] - rv[i]); d > worst || math.IsNaN(d) {
				worst = d
			}
		}
		if !(worst <= tolCheckpointMaps*scale) {
			t.Errorf("%s %s: max |Go − PyTorch| = %.3g, over %.0e × max|ref| (%.3g)", what, name, worst, tolCheckpointMaps, scale)
		} else {
			t.Logf("%s %s: max |Go − PyTorch| = %.3g (max|ref| %.3g)", what, name, worst, scale)
		}
	}
}

func infer(t *testing.T, m *Model, batchPath string, fn func(*Maps)) {
	t.Helper()
	err := torch.WithScope(func(*torch.Scope) {
		b, err := LoadBatch(batchPath, torch.CPU, false)
		if err != nil {
			t.Fatal(err)
		}
		mp, err := m.Infer(b)
		if err != nil {
			t.Fatal(err)
		}
		fn(mp)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLoadReleasedCheckpoint: a checkpoint saved by PyTorch in the released format (the whole
// Net's state_dict) loads with Load; the model's StateDict has the file's keys in the file's
// order and bitwise its values; its inference maps equal PyTorch's to 1e-5.
func TestLoadReleasedCheckpoint(t *testing.T) {
	r := releasedData(t)
	m := loadReleased(t, r)
	sd, err := m.StateDict()
	if err != nil {
		t.Fatal(err)
	}
	if got := names(sd); strings.Join(got, "\n") != strings.Join(r.keys, "\n") {
		t.Fatalf("StateDict keys differ from the released file's:\n got %d %v\nfile %d %v", len(got), got, len(r.keys), r.keys)
	}
	file, err := ptfile.Read(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range file {
		n := sd[i]
		if n.Tensor.DType().String() != e.Tensor.DType.String() || !bytes.Equal(n.Tensor.Bytes(), e.Tensor.Data) {
			t.Errorf("%s: loaded %s differs from the file's %s", e.Name, n.Tensor.DType(), e.Tensor.DType)
		}
	}
	infer(t, m, r.batch, func(mp *Maps) { compareMaps(t, "released file in Go", mp, filepath.Join(r.dir, "ref")) })
}

// perturb changes every tensor of the model: floating-point ones by a factor 1 + 0.05·N(0,1)
// (BatchNorm variances stay positive), the BatchNorm batch counters by +5.
func perturb(t *testing.T, m *Model, seed uint64) {
	t.Helper()
	sd, err := m.StateDict()
	if err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(seed, torch.CPU)
	err = torch.NoGradScope(func(*torch.Scope) {
		for _, n := range sd {
			x := n.Tensor
			if x.DType() == torch.Int64 {
				x.AddScalar_(5)
				continue
			}
			f := torch.Randn(x.Shape(), g).MulScalar(0.05).AddScalar(1).Abs()
			x.Mul_(f)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func python(t *testing.T) string {
	t.Helper()
	py := os.Getenv("AFFGD_PYTHON")
	if py == "" {
		t.Fatal("AFFGD_PYTHON is not set: `make test` sets it to the project venv's python")
	}
	return py
}

// TestCheckpointLoadsInReleasedCode: a checkpoint written by SaveCheckpoint (of a model whose
// every tensor was changed, so nothing can come from the original file) loads into the released
// module tree in PyTorch with load_state_dict(strict=True) — same keys, same order, bitwise the
// same values — and PyTorch's inference maps equal Go's to 1e-5. Load reads it back bitwise.
func TestCheckpointLoadsInReleasedCode(t *testing.T) {
	r := releasedData(t)
	m := loadReleased(t, r)
	perturb(t, m, 7)
	path := filepath.Join(t.TempDir(), "affgd.pt")
	if err := SaveCheckpoint(path, m); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(python(t), testref.Script("checkpoint", "check_load.py"), path, r.batch, r.vocab, "seen", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check_load.py: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		FileKeys  []string          `json:"file_keys"`
		ModelKeys []string          `json:"model_keys"`
		SameOrder bool              `json:"same_order"`
		Bitwise   bool              `json:"bitwise"`
		DTypes    []string          `json:"dtypes"`
		SHA256    map[string]string `json:"sha256"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	sd, _ := m.StateDict()
	if !rep.SameOrder || !rep.Bitwise || strings.Join(rep.ModelKeys, ",") != strings.Join(names(sd), ",") {
		t.Errorf("PyTorch: same order %v, bitwise %v, released model keys = ours: %v", rep.SameOrder, rep.Bitwise,
			strings.Join(rep.ModelKeys, ",") == strings.Join(names(sd), ","))
	}
	for _, n := range sd {
		if sum := sha256.Sum256(n.Tensor.Bytes()); hex.EncodeToString(sum[:]) != rep.SHA256[n.Name] {
			t.Errorf("%s: torch.load reads other bytes than the model holds", n.Name)
		}
	}
	t.Logf("PyTorch loaded %d keys strictly, bitwise the model's, dtypes %v", len(rep.FileKeys), rep.DTypes)

	var before []float32
	infer(t, m, r.batch, func(mp *Maps) {
		compareMaps(t, "Go-written file in PyTorch", mp, out)
		before = torch.Cat([]*torch.Tensor{mp.CAM.Flatten(0, -1), mp.REE.Flatten(0, -1), mp.REM.Flatten(0, -1)}, 0).Float32s()
	})
	back, err := Load(Files{Checkpoint: path, Vocab: r.vocab, Divide: data.Seen})
	if err != nil {
		t.Fatal(err)
	}
	bsd, _ := back.StateDict()
	for i := range sd {
		if !bytes.Equal(sd[i].Tensor.Bytes(), bsd[i].Tensor.Bytes()) {
			t.Errorf("%s changed in the Go round trip", sd[i].Name)
		}
	}
	infer(t, back, r.batch, func(mp *Maps) {
		after := torch.Cat([]*torch.Tensor{mp.CAM.Flatten(0, -1), mp.REE.Flatten(0, -1), mp.REM.Flatten(0, -1)}, 0).Float32s()
		for i := range after {
			if math.Float32bits(after[i]) != math.Float32bits(before[i]) {
				t.Fatalf("maps after the Go round trip differ at %d: %v, before %v", i, after[i], before[i])
			}
		}
	})
}

// failAfter is a writer that accepts n bytes and then fails as a full disk does.
type failAfter struct {
	w io.Writer
	n int64
}

func (f *failAfter) Write(p []byte) (int, error) {
	if int64(len(p)) <= f.n {
		f.n -= int64(len(p))
		return f.w.Write(p)
	}
	k, _ := f.w.Write(p[:f.n])
	f.n = 0
	return k, &os.PathError{Op: "write", Path: "checkpoint", Err: syscall.ENOSPC}
}

// TestSaveCheckpointAtomic: a write that fails midway (the disk fills after n bytes) leaves the
// previous checkpoint byte for byte, or no file where there was none, and no temporary file; the
// error names the path and the cause. A folder that does not exist is an error naming the path.
func TestSaveCheckpointAtomic(t *testing.T) {
	r := releasedData(t)
	m := loadReleased(t, r)
	defer func() { writeHook = nil }()
	for _, c := range []struct {
		name     string
		failAt   int64
		previous bool
	}{
		{"fails at once, previous file", 0, true},
		{"fails in the header, previous file", 100, true},
		{"fails in the tensors, previous file", 20 << 20, true},
		{"fails in the tensors, no previous file", 20 << 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "model.pt")
			old := []byte("the previous checkpoint")
			if c.previous {
				if err := os.WriteFile(path, old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			writeHook = func(w io.Writer) io.Writer { return &failAfter{w: w, n: c.failAt} }
			err := SaveCheckpoint(path, m)
			writeHook = nil
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), path) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") {
				t.Errorf("error %q does not name the path and the cause", err)
			}
			got, rerr := os.ReadFile(path)
			switch {
			case c.previous && !bytes.Equal(got, old):
				t.Errorf("the previous file changed: %q (%v)", got, rerr)
			case !c.previous && !os.IsNotExist(rerr):
				t.Errorf("a file appeared at %s (%v)", path, rerr)
			}
			ents, _ := os.ReadDir(dir)
			if want := map[bool]int{true: 1, false: 0}[c.previous]; len(ents) != want {
				t.Errorf("the folder holds %d entries, want %d (a temporary file was left?)", len(ents), want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "no", "such", "folder", "model.pt")
	if err := SaveCheckpoint(path, m); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("missing folder: error %v does not name %s", err, path)
	} else {
		t.Log(err)
	}
	// The same model, written without a failure, replaces the previous file.
	path = filepath.Join(t.TempDir(), "model.pt")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveCheckpoint(path, m); err != nil {
		t.Fatal(err)
	}
	if e, err := ptfile.Read(path); err != nil || len(e) != len(r.keys) {
		t.Errorf("the new checkpoint: %d entries, %v", len(e), err)
	}
}

// rewrite writes the released file's entries, changed by edit, to a new file.
func rewrite(t *testing.T, r released, edit func([]ptfile.Entry) []ptfile.Entry) string {
	t.Helper()
	e, err := ptfile.Read(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "edited.pt")
	if err := ptfile.Write(path, edit(e)); err != nil {
		t.Fatal(err)
	}
	return path
}

func without(key string) func([]ptfile.Entry) []ptfile.Entry {
	return func(e []ptfile.Entry) []ptfile.Entry {
		var out []ptfile.Entry
		for _, x := range e {
			if x.Name != key {
				out = append(out, x)
			}
		}
		return out
	}
}

// TestLoadRejectsWrongCheckpoints: checkpoints that do not fit the model give one error naming
// the file's problem: the key, the shape found and the shape expected; a missing or unexpected
// key; a file that is not a checkpoint.
func TestLoadRejectsWrongCheckpoints(t *testing.T) {
	r := releasedData(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a checkpoint\n"), 0o644)
	empty := filepath.Join(dir, "empty.pt")
	os.WriteFile(empty, nil, 0o644)
	truncated := filepath.Join(dir, "truncated.pt")
	if raw, err := os.ReadFile(r.ckpt); err == nil {
		os.WriteFile(truncated, raw[:len(raw)/2], 0o644)
	}
	tenClasses := func(e []ptfile.Entry) []ptfile.Entry {
		for i, x := range e {
			if strings.HasPrefix(x.Name, "aff_classifier.") {
				s := append([]int64{10}, x.Tensor.Shape[1:]...)
				n := x.Tensor.DType.ElemSize()
				for _, d := range s {
					n *= int(d)
				}
				e[i].Tensor = &ptfile.Tensor{DType: x.Tensor.DType, Shape: s, Data: x.Tensor.Data[:n]}
			}
		}
		return e
	}
	for _, c := range []struct {
		name string
		path string
		want []string
	}{
		{"10 classes for the 36 of Seen", rewrite(t, r, tenClasses), []string{"aff_classifier.weight", "[10 384 1 1]", "[36 384 1 1]"}},
		{"head key missing", rewrite(t, r, without("aff_proj.fc1.bias")), []string{"missing", "aff_proj.fc1.bias"}},
		{"BatchNorm buffer missing", rewrite(t, r, without("aff_exo_proj.4.running_var")), []string{"missing", "aff_exo_proj.4.running_var"}},
		{"CLIP key missing", rewrite(t, r, without("net.ln_final.weight")), []string{"ln_final.weight"}},
		{"DINO key missing", rewrite(t, r, without("vit_model.norm.bias")), []string{"norm.bias"}},
		{"unexpected key", rewrite(t, r, func(e []ptfile.Entry) []ptfile.Entry {
			return append(e, ptfile.Entry{Name: "extra_proj.weight", Tensor: &ptfile.Tensor{DType: ptfile.Float32, Shape: []int64{1}, Data: make([]byte, 4)}})
		}), []string{"unexpected", "extra_proj.weight"}},
		{"text file", text, []string{text}},
		{"empty file", empty, []string{empty}},
		{"truncated file", truncated, []string{truncated}},
		{"no such file", filepath.Join(dir, "missing.pt"), []string{"missing.pt"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Files{Checkpoint: c.path, Vocab: r.vocab, Divide: data.Seen})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// stepOnce runs one training step of m on batch i of a fixed stream (the same for every run),
// drawing the K-means starts from g.
func stepOnce(t *testing.T, m *Model, opt *optim.SGD, g *torch.Generator, i int, epoch int) {
	t.Helper()
	err := torch.WithScope(func(*torch.Scope) {
		bg, _ := torch.NewGenerator(uint64(100+i), torch.CPU)
		d := m.DINO.Device() // the batch goes where the model is
		b := Batch{
			Exo:   torch.Randn([]int64{2, 3, 3, 64, 64}, bg).To(d),
			Ego:   torch.Randn([]int64{2, 3, 64, 64}, bg).To(d),
			Label: torch.FromSlice([]int64{int64(3 * i), int64(3*i + 7)}).To(d),
		}
		res, err := m.Forward(b, Options{Epoch: epoch, Discovery: discovery.DefaultOptions(), Gen: g})
		if err != nil {
			t.Fatal(err)
		}
		opt.ZeroGrad()
		res.Loss.Backward()
		opt.Step()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot returns the bytes of every head tensor and momentum buffer.
func snapshot(m *Model, opt *optim.SGD) map[string][]byte {
	out := map[string][]byte{}
	for _, n := range m.Head.NamedTensors() {
		out["head."+n.Name] = n.Tensor.Bytes()
	}
	for gi, bufs := range opt.MomentumBuffers() {
		for pi, b := range bufs {
			if b != nil {
				out[fmt.Sprintf("momentum %d/%d", gi, pi)] = b.Bytes()
			}
		}
	}
	return out
}

func newOptim(t *testing.T, m *Model) (*optim.SGD, *optim.StepLR) {
	t.Helper()
	opt, err := optim.NewSGD(m.Head.ParamGroups(BaseLR))
	if err != nil {
		t.Fatal(err)
	}
	return opt, optim.NewStepLR(opt, 1, 0.5)
}

// TestStateResume: a run saves its state after two SGD steps (the learning rate decayed once in
// between); a fresh model, optimizer, scheduler and generator loaded from that state take a third
// step whose parameters, BatchNorm buffers and momentum buffers are bitwise those of the run
// that went on uninterrupted. The State's fields come back as saved (+Inf and NaN included).
func TestStateResume(t *testing.T) {
	r := releasedData(t)
	config := []byte("lr: 0.001\nepochs: 15\n")
	want := State{Epoch: 1, NextBatch: 0, Step: 2, Seed: 99, Best: map[string]float64{"kld": math.Inf(1), "sim": 0.375, "nss": math.NaN()},
		Log: []byte("epoch 0: loss 3.2\n"), Config: config}

	a := loadReleased(t, r)
	optA, schedA := newOptim(t, a)
	gA, _ := torch.NewGenerator(5, torch.CPU)
	stepOnce(t, a, optA, gA, 0, 0)
	schedA.Step()
	stepOnce(t, a, optA, gA, 1, 1)
	rng, err := GeneratorState(gA)
	if err != nil {
		t.Fatal(err)
	}
	want.RNG = map[string][]byte{"kmeans": rng}
	path := filepath.Join(t.TempDir(), "state.pt")
	if err := SaveState(path, a, optA, schedA, want); err != nil {
		t.Fatal(err)
	}
	stepOnce(t, a, optA, gA, 2, 1)
	uninterrupted := snapshot(a, optA)

	b := loadReleased(t, r)
	optB, schedB := newOptim(t, b)
	got, err := LoadState(path, b, optB, schedB)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckConfig(config); err != nil {
		t.Error(err)
	}
	if err := got.CheckConfig([]byte("lr: 0.001\nepochs: 16\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("another configuration: %v", err)
	}
	if got.Epoch != want.Epoch || got.NextBatch != want.NextBatch || got.Step != want.Step || got.Seed != want.Seed ||
		!bytes.Equal(got.Log, want.Log) || !bytes.Equal(got.Config, want.Config) || !bytes.Equal(got.RNG["kmeans"], rng) || len(got.RNG) != 1 {
		t.Errorf("state %+v, saved %+v", got, want)
	}
	if len(got.Best) != 3 || !math.IsInf(got.Best["kld"], 1) || got.Best["sim"] != 0.375 || !math.IsNaN(got.Best["nss"]) {
		t.Errorf("best %v, saved %v", got.Best, want.Best)
	}
	if schedB.LastEpoch != 1 || fmt.Sprint(schedB.LRs()) != fmt.Sprint([]float64{BaseLR / 2, BaseLR, 5 * BaseLR, 10 * BaseLR}) {
		t.Errorf("scheduler at %d with rates %v", schedB.LastEpoch, schedB.LRs())
	}
	gB, _ := torch.NewGenerator(12345, torch.CPU)
	if err := RestoreGenerator(gB, got.RNG["kmeans"]); err != nil {
		t.Fatal(err)
	}
	stepOnce(t, b, optB, gB, 2, 1)
	resumed := snapshot(b, optB)
	if len(resumed) != len(uninterrupted) {
		t.Fatalf("%d tensors after the resumed step, %d uninterrupted", len(resumed), len(uninterrupted))
	}
	for k, v := range uninterrupted {
		if !bytes.Equal(v, resumed[k]) {
			t.Errorf("%s differs between the resumed and the uninterrupted run", k)
		}
	}
	t.Logf("%d head tensors and momentum buffers bitwise equal after the resumed step", len(resumed))

	// The state file is a plain torch.save file.
	py := python(t)
	out, err := exec.Command(py, "-c", "import sys, torch; d = torch.load(sys.argv[1], weights_only=True); "+
		"print(len(d), bytes(d['meta'].tolist()).decode()[:40])", path).CombinedOutput()
	if err != nil {
		t.Errorf("torch.load of the state file: %v\n%s", err, out)
	} else {
		t.Logf("torch.load: %s", bytes.TrimSpace(out))
	}
}

// editState copies the state file at path without the entry named edit, or with the entry
// renamed when edit is "old=new".
func editState(t *testing.T, path, edit string) string {
	t.Helper()
	e, err := ptfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	old, repl, rename := strings.Cut(edit, "=")
	var out []ptfile.Entry
	for _, x := range e {
		if x.Name == old {
			if !rename {
				continue
			}
			x.Name = repl
		}
		out = append(out, x)
	}
	if len(out) == len(e) && !rename {
		t.Fatalf("no entry %q in %s", old, path)
	}
	dst := filepath.Join(t.TempDir(), "edited.pt")
	if err := ptfile.Write(dst, out); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestLoadStateRejects: files and setups a state cannot be resumed into give an error naming the
// file and the difference, and leave the model and optimizer as they were.
func TestLoadStateRejects(t *testing.T) {
	r := releasedData(t)
	m := loadReleased(t, r)
	opt, sched := newOptim(t, m)
	g, _ := torch.NewGenerator(5, torch.CPU)
	stepOnce(t, m, opt, g, 0, 0)
	dir := t.TempDir()
	good := filepath.Join(dir, "state.pt")
	if err := SaveState(good, m, opt, sched, State{Config: []byte("a: 1\n")}); err != nil {
		t.Fatal(err)
	}
	// A state of a 10-class head.
	hg, _ := torch.NewGenerator(1, torch.CPU)
	small := &Model{Head: head.New(10, hg)}
	sopt, err := optim.NewSGD(small.Head.ParamGroups(BaseLR))
	if err != nil {
		t.Fatal(err)
	}
	tenPath := filepath.Join(dir, "ten.pt")
	if err := SaveState(tenPath, small, sopt, nil, State{}); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello"), 0o644)

	before := snapshot(m, opt)
	lrs := fmt.Sprint(sched.LRs())
	fresh := func() (*Model, *optim.SGD, *optim.StepLR) { return m, opt, sched }
	for _, c := range []struct {
		name  string
		path  string
		setup func() (*Model, *optim.SGD, *optim.StepLR)
		want  []string
	}{
		{"a model checkpoint", r.ckpt, fresh, []string{"not a training state file", "meta"}},
		{"a text file", text, fresh, []string{"not a training state file"}},
		{"no such file", filepath.Join(dir, "none.pt"), fresh, []string{"none.pt"}},
		{"another number of classes", tenPath, fresh, []string{"10 classes", "36"}},
		{"no scheduler given", good, func() (*Model, *optim.SGD, *optim.StepLR) { return m, opt, nil }, []string{"scheduler"}},
		{"another decay", good, func() (*Model, *optim.SGD, *optim.StepLR) { return m, opt, optim.NewStepLR(opt, 1, 0.1) }, []string{"by 0.5", "by 0.1"}},
		{"other groups", good, func() (*Model, *optim.SGD, *optim.StepLR) {
			o, _ := optim.NewSGD(m.Head.ParamGroups(BaseLR)[:2])
			return m, o, nil
		}, []string{"4 optimizer parameter groups", "optimizer 2"}},
		{"head tensor missing", editState(t, good, "head.aff_proj.fc1.weight"), fresh, []string{"missing", "aff_proj.fc1.weight"}},
		{"momentum of an unknown parameter", editState(t, good, "momentum.aff_proj.fc1.bias=momentum.aff_proj.fc9.bias"), fresh,
			[]string{"momentum buffer", "aff_proj.fc9.bias"}},
		{"unknown entry", editState(t, good, "lr=learning_rate"), fresh, []string{"unexpected", "learning_rate"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			mm, o, s := c.setup()
			_, err := LoadState(c.path, mm, o, s)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range append([]string{c.path}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	after := snapshot(m, opt)
	for k, v := range before {
		if !bytes.Equal(v, after[k]) {
			t.Errorf("%s changed by a failed LoadState", k)
		}
	}
	if fmt.Sprint(sched.LRs()) != lrs {
		t.Errorf("learning rates changed by a failed LoadState: %v, were %s", sched.LRs(), lrs)
	}
}

// procStatus returns a field of /proc/self/status in bytes (Linux), or -1.
func procStatus(field string) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return -1
}

// BenchmarkSaveCheckpointFull writes the full-size model (DINO ViT-S/16, CLIP ViT-B/16, the
// 36-class head; random weights) and reports the file size and the peak resident memory during
// the write above the resident memory before it (Linux: VmHWM after resetting it through
// /proc/self/clear_refs). Run with: go test ./train -run '^$' -bench SaveCheckpointFull -benchtime 1x
func BenchmarkSaveCheckpointFull(b *testing.B) {
	g, _ := torch.NewGenerator(1, torch.CPU)
	vit, err := dino.New(dino.ViTS16(), g)
	if err != nil {
		b.Fatal(err)
	}
	cm, err := clip.New(clip.ViTB16(), g)
	if err != nil {
		b.Fatal(err)
	}
	m := &Model{DINO: vit, CLIP: cm, Head: head.New(36, g)}
	path := filepath.Join(b.TempDir(), "full.pt")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		before := procStatus("VmRSS")
		if err := SaveCheckpoint(path, m); err != nil {
			b.Fatal(err)
		}
		peak := procStatus("VmHWM")
		st, _ := os.Stat(path)
		b.ReportMetric(float64(st.Size())/1e6, "file_MB")
		b.ReportMetric(float64(before)/1e6, "rss_before_MB")
		b.ReportMetric(float64(peak-before)/1e6, "peak_extra_MB")
	}
}

// TestSaveRejects: what cannot be saved is an error naming the problem, never a panic, and
// writes nothing.
func TestSaveRejects(t *testing.T) {
	hg, _ := torch.NewGenerator(1, torch.CPU)
	h := head.New(10, hg)
	m := &Model{Head: h}
	opt, err := optim.NewSGD(h.ParamGroups(BaseLR))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := optim.NewSGD([]optim.ParamGroup{{Name: "other", LR: 1, Params: []*torch.Tensor{torch.Zeros([]int64{3})}}})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := optim.NewSGD(h.ParamGroups(BaseLR))
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pt")
	for _, c := range []struct {
		name string
		save func() error
		want string
	}{
		{"checkpoint of a model without backbones", func() error { return SaveCheckpoint(path, m) }, "incomplete"},
		{"checkpoint of no model", func() error { return SaveCheckpoint(path, nil) }, "incomplete"},
		{"state without an optimizer", func() error { return SaveState(path, m, nil, nil, State{}) }, "optimizer"},
		{"state of a foreign parameter", func() error { return SaveState(path, m, foreign, nil, State{}) }, "not a parameter of the model's head"},
		{"scheduler of another optimizer", func() error { return SaveState(path, m, opt, optim.NewStepLR(other, 1, 0.5), State{}) }, "another optimizer"},
		{"state to a folder", func() error { return SaveState(dir+"/", m, opt, nil, State{}) }, "folder"},
		{"state resumed into no model", func() error { _, err := LoadState(path, nil, opt, nil); return err }, "model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.save()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
			t.Log(err)
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("a file was written")
			}
		})
	}
}
