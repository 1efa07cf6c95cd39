package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// cliEnv is the built binary and the small synthetic set every subtest of TestCLI uses.
type cliEnv struct {
	bin, dir         string   // the binary; the scratch folder commands run in
	root             string   // the synthetic dataset root (holds Seen/)
	dino, clip, voc  string   // the synthetic weights
	testImages       []string // sorted: cut_with's then hold's
	holdImages       []string
	trainFlags       []string // the short training run's flags, without --out-dir
	run1             string   // out_dir of the one-epoch run
	checkpointTrain1 string   // its last.pth
}

// result is one command's exit code and output.
type result struct {
	code           int
	stdout, stderr string
}

// forbidden may never appear in a command's stderr: a Go panic or a C++ exception escaping.
var forbidden = []string{"panic:", "goroutine ", "terminate called", "[recovered]", "SIGSEGV"}

// onTestDevice adds --device $AFFGD_TEST_DEVICE (internal/testdev) to the commands that compute
// (train, eval, predict, debug step/infer) unless args name a device already.
func onTestDevice(args []string) []string {
	if !testdev.IsCUDA() || len(args) == 0 || slices.Contains(args, "--device") {
		return args
	}
	switch {
	case args[0] == "train" || args[0] == "eval" || args[0] == "predict",
		args[0] == "debug" && len(args) > 1 && (args[1] == "step" || args[1] == "infer"):
		dev, _ := testdev.Setup()
		return append(append([]string{}, args...), "--device", dev.String())
	}
	return args
}

// run runs the binary with args in the scratch folder.
func (c *cliEnv) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = onTestDevice(args)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("affgd %s: %v", strings.Join(args, " "), err)
	}
	checkClean(t, args, r.stderr)
	return r
}

// mustRun runs a command that must succeed.
func (c *cliEnv) mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("affgd %s: exit %d\n%s", strings.Join(args, " "), r.code, tail(r.stderr))
	}
	return r
}

func checkClean(t *testing.T, args []string, stderr string) {
	t.Helper()
	for _, f := range forbidden {
		if strings.Contains(stderr, f) {
			t.Errorf("affgd %s: stderr holds %q:\n%s", strings.Join(args, " "), f, tail(stderr))
		}
	}
}

// lines splits output on newlines and the progress bars' carriage returns, dropping blank lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string) string {
	l := lines(s)
	if len(l) > 15 {
		l = l[len(l)-15:]
	}
	return strings.Join(l, "\n")
}

// setup builds the binary and writes the synthetic set and the one-epoch run once for all
// subtests.
func setup(t *testing.T) *cliEnv {
	t.Helper()
	tmp := t.TempDir()
	c := &cliEnv{bin: filepath.Join(tmp, "affgd"), dir: filepath.Join(tmp, "work")}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if prebuilt := os.Getenv("AFFGD_BIN"); prebuilt != "" {
		// A machine without Go (scripts/gpu-check.sh) tests the bundled binary.
		c.bin = prebuilt
	} else {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		build := exec.Command(goBin, "build", "-o", c.bin, "./cmd/affgd")
		build.Dir = testref.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/affgd: %v\n%s", err, out)
		}
	}

	synth := []string{"synth", "--out", "syn", "--actions", "hold,cut_with", "--objects", "1",
		"--exo", "4", "--ego", "2", "--test", "2", "--size", "96"}
	if v := os.Getenv("AFFGD_BPE_VOCAB"); v != "" {
		synth = append(synth, "--vocab", v)
	}
	c.mustRun(t, synth...)
	syn := filepath.Join(c.dir, "syn")
	c.root = filepath.Join(syn, "data")
	c.dino = filepath.Join(syn, "weights", "dino_tiny.pth")
	c.clip = filepath.Join(syn, "weights", "clip_tiny.pt")
	c.voc = filepath.Join(syn, "weights", "bpe_simple_vocab_16e6.txt.gz")
	if _, err := os.Stat(c.voc); err != nil {
		t.Fatalf("affgd synth wrote no CLIP vocabulary: %v", err)
	}
	ts, err := data.OpenTest(c.root, data.Seen)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range ts.Items {
		c.testImages = append(c.testImages, it.Image)
		if it.Action == "hold" {
			c.holdImages = append(c.holdImages, it.Image)
		}
	}
	c.trainFlags = []string{"train", "--data-root", c.root, "--dino", c.dino, "--clip", c.clip, "--vocab", c.voc,
		"--resize-size", "72", "--crop-size", "64", "--batch-size", "2", "--workers", "2", "--threads", "2"}
	c.run1 = filepath.Join(c.dir, "run1")
	c.mustRun(t, append(c.trainFlags, "--epochs", "1", "--out-dir", c.run1)...)
	c.checkpointTrain1 = filepath.Join(c.run1, "last.pth")
	return c
}

// weights are the flags of the synthetic backbones without a head.
func (c *cliEnv) weights() []string {
	return []string{"--dino", c.dino, "--clip", c.clip, "--vocab", c.voc}
}

func TestCLI(t *testing.T) {
	start := time.Now()
	c := setup(t)
	t.Run("train", c.testTrain)
	t.Run("interrupt and resume", c.testInterrupt)
	t.Run("eval", c.testEval)
	t.Run("predict and debug metrics", c.testPredict)
	t.Run("errors", c.testErrors)
	t.Run("runtime needs only libtorch", c.testRuntimeAlone)
	t.Run("one run per out_dir", c.testLock)
	t.Run("kill -9 and resume", c.testKill)
	t.Run("resume with another run's state", c.testResumeOtherState)
	t.Run("predict same file names", c.testPredictSameNames)
	t.Logf("TestCLI: %.1fs", time.Since(start).Seconds())
}

// testTrain checks what one short epoch writes into out_dir.
func (c *cliEnv) testTrain(t *testing.T) {
	for _, name := range []string{"last.pth", "best.pth", "state.pt", "metrics.jsonl", "training.png", "config.yaml"} {
		st, err := os.Stat(filepath.Join(c.run1, name))
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", name, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(c.run1, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(string(b))
	if len(ls) != 1 {
		t.Fatalf("metrics.jsonl: %d lines, want 1 (one epoch)", len(ls))
	}
	for i, l := range ls {
		var rec struct {
			Epoch  int                `json:"epoch"`
			Losses map[string]float64 `json:"losses"`
			Eval   *report.Summary    `json:"eval"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("metrics.jsonl line %d: %v", i+1, err)
		}
		if rec.Epoch != i+1 || len(rec.Losses) == 0 || rec.Eval == nil {
			t.Errorf("metrics.jsonl line %d: epoch %d, %d losses, eval %v", i+1, rec.Epoch, len(rec.Losses), rec.Eval != nil)
		}
		if rec.Eval != nil {
			for _, m := range []string{"cam", "ree", "rem"} {
				if f := rec.Eval.Overall[m]; f.N != len(c.testImages) || math.IsNaN(f.KLD) {
					t.Errorf("metrics.jsonl line %d: %s %+v, want %d images", i+1, m, f, len(c.testImages))
				}
			}
		}
	}
	f, err := os.Open(filepath.Join(c.run1, "training.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, format, err := image.DecodeConfig(f); err != nil || format != "png" {
		t.Errorf("training.png: %q, %v", format, err)
	}
	var cfg map[string]any
	if b, err := os.ReadFile(filepath.Join(c.run1, "config.yaml")); err != nil {
		t.Error(err)
	} else if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Errorf("config.yaml: %v", err)
	} else if cfg["batch_size"] != 2 || cfg["crop_size"] != 64 || cfg["epochs"] != 1 {
		t.Errorf("config.yaml: batch_size %v, crop_size %v, epochs %v; want the flags' 2, 64, 1", cfg["batch_size"], cfg["crop_size"], cfg["epochs"])
	}
	// The checkpoint loads as a released-format state dict for the Seen classes.
	m, err := train.Load(train.Files{Checkpoint: c.checkpointTrain1, Vocab: c.voc, Divide: data.Seen})
	if err != nil {
		t.Fatalf("last.pth: %v", err)
	}
	if len(m.Classes) != len(data.Seen.Classes()) {
		t.Errorf("last.pth: %d classes", len(m.Classes))
	}
}

// testInterrupt stops a run with SIGINT after its first step, then resumes it, and compares the
// result with an uninterrupted run of the same flags.
func (c *cliEnv) testInterrupt(t *testing.T) {
	flags := append(append([]string{}, c.trainFlags...), "--epochs", "2")
	ref := filepath.Join(c.dir, "uninterrupted")
	c.mustRun(t, append(flags, "--out-dir", ref)...)

	out := filepath.Join(c.dir, "interrupted")
	args := append(flags, "--out-dir", out)
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stderr bytes.Buffer
	stepped := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		once := sync.Once{}
		for {
			n, err := pipe.Read(buf)
			mu.Lock()
			stderr.Write(buf[:n])
			// The bar's description shows the running loss once the first step is done.
			if strings.Contains(stderr.String(), " loss ") {
				once.Do(func() { close(stepped) })
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-stepped:
	case <-time.After(60 * time.Second):
		t.Error("no training step reported within 60 s; interrupting anyway")
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-readDone
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	errText := stderr.String()
	mu.Unlock()
	checkClean(t, args, errText)
	if code != 130 {
		t.Fatalf("interrupted train: exit %d, want 130\n%s", code, tail(errText))
	}
	if !strings.Contains(errText, "--resume") {
		t.Errorf("interrupted train: stderr does not say how to resume:\n%s", tail(errText))
	}
	if _, err := os.Stat(filepath.Join(out, "state.pt")); err != nil {
		t.Fatalf("interrupted train left no state.pt: %v", err)
	}
	known := map[string]bool{"last.pth": true, "best.pth": true, "state.pt": true, "metrics.jsonl": true, "training.png": true, "config.yaml": true}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if !known[e.Name()] {
			t.Errorf("interrupted train left %s in out_dir (a temporary file?)", e.Name())
		}
	}

	r := c.mustRun(t, append(args, "--resume")...)
	resumed := ""
	for _, l := range lines(r.stderr) {
		if strings.Contains(l, "resuming") {
			resumed = l
		}
	}
	if resumed == "" {
		t.Errorf("resumed train: stderr does not say where it resumed:\n%s", tail(r.stderr))
	}
	t.Logf("SIGINT after the first step; %s", resumed)
	for _, name := range []string{"last.pth", "best.pth"} {
		sameCheckpoint(t, c, filepath.Join(ref, name), filepath.Join(out, name))
	}
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lines(string(b))); n != 2 {
		t.Errorf("resumed run's metrics.jsonl: %d lines, want 2 (one per epoch)", n)
	}
}

// sameCheckpoint requires two checkpoints to be the same file; when they are not, it names the
// first tensor that differs.
func sameCheckpoint(t *testing.T, c *cliEnv, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		return
	}
	ma, err := train.Load(train.Files{Checkpoint: want, Vocab: c.voc, Divide: data.Seen})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := train.Load(train.Files{Checkpoint: got, Vocab: c.voc, Divide: data.Seen})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := ma.StateDict()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := mb.StateDict()
	if err != nil {
		t.Fatal(err)
	}
	for i := range sa {
		var d float64
		if err := torch.Try(func() {
			d = sa[i].Tensor.ToDType(torch.Float64).Sub(sb[i].Tensor.ToDType(torch.Float64)).Abs().Max().Item()
		}); err != nil {
			t.Fatalf("%s: %v", sa[i].Name, err)
		}
		if d != 0 {
			t.Fatalf("%s differs from the uninterrupted run's %s: %s max |Δ| %g", got, want, sa[i].Name, d)
		}
	}
	t.Errorf("%s and %s hold the same tensors but are not the same bytes", got, want)
}

// testEval checks eval's JSON and tables on the trained checkpoint and on a fresh head.
func (c *cliEnv) testEval(t *testing.T) {
	n := len(c.testImages)
	r := c.mustRun(t, "eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1,
		"--vocab", c.voc, "--json")
	var sum report.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, r.stdout)
	}
	for _, m := range []string{"cam", "ree", "rem"} {
		f, ok := sum.Overall[m]
		if !ok || f.N != n || math.IsNaN(f.KLD) || math.IsNaN(f.SIM) || f.KLD < 0 || f.SIM < 0 || f.SIM > 1 {
			t.Errorf("eval --json: %s %+v (present %v), want %d images", m, f, ok, n)
		}
	}
	for _, class := range []string{"hold", "cut_with"} {
		if f := sum.PerClass[class]["ree"]; f.N != n/2 {
			t.Errorf("eval --json: class %s: %+v, want %d images", class, f, n/2)
		}
	}

	r = c.mustRun(t, "eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1,
		"--vocab", c.voc, "--per-class", "--limit", "3")
	for _, want := range []string{"cam", "ree", "rem", "KLD", "SIM", "NSS", "hold", "cut_with", "3 images"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval --per-class: the table lacks %q:\n%s", want, r.stdout)
		}
	}

	r = c.mustRun(t, append([]string{"eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--json"}, c.weights()...)...)
	sum = report.Summary{}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("eval with a fresh head: %v\n%s", err, r.stdout)
	}
	if sum.Overall["ree"].N != n {
		t.Errorf("eval with a fresh head: %+v", sum.Overall)
	}
}

// testPredict checks predict's files, and that `debug metrics` on them gives what data.Evaluate
// and eval give.
func (c *cliEnv) testPredict(t *testing.T) {
	out := filepath.Join(c.dir, "pred")
	imgs := c.holdImages
	if len(imgs) != 2 {
		t.Fatalf("synth wrote %d hold test images, want 2", len(imgs))
	}
	// Batch 1 in predict and eval below, so that their figures can be compared bitwise (a batch's
	// maps differ from batch 1's by float32 rounding, checked below and in evaluate's tests).
	args := []string{"predict", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--action", "hold", "--out", out, "--batch-size", "1"}
	for _, p := range imgs {
		args = append(args, "--image", p)
	}
	c.mustRun(t, args...)
	var npys []string
	for _, p := range imgs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		src, _, err := image.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		stem := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		for _, m := range []string{"cam", "ree", "rem"} {
			base := filepath.Join(out, stem+"_hold_"+m)
			f, err := os.Open(base + ".png")
			if err != nil {
				t.Errorf("predict: %v", err)
				continue
			}
			cfg, format, err := image.DecodeConfig(f)
			f.Close()
			if err != nil || format != "png" || cfg.Width != src.Width || cfg.Height != src.Height {
				t.Errorf("%s.png: %s %dx%d (%v), want a png of the image's %dx%d", base, format, cfg.Width, cfg.Height, err, src.Width, src.Height)
			}
			a, err := npy.LoadTensor(base + ".npy")
			if err != nil {
				t.Errorf("predict: %v", err)
				continue
			}
			if s := a.Shape(); len(s) != 2 || s[0] != 14 || s[1] != 14 || a.DType() != torch.Float32 {
				t.Errorf("%s.npy: %v %v, want float32 (14, 14)", base, a.DType(), s)
			}
			npys = append(npys, base+".npy")
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 6*len(imgs)+1 {
		t.Errorf("predict wrote %d files for %d images, want 3 png + 3 npy each and index.tsv", len(entries), len(imgs))
	}

	// debug metrics equals data.Evaluate on the same files.
	ts, err := data.OpenTest(c.root, data.Seen)
	if err != nil {
		t.Fatal(err)
	}
	gtOf := map[string]string{}
	for _, it := range ts.Items {
		gtOf[it.Image] = it.GT
	}
	cliScores := map[string]map[string]float64{}
	for i, p := range npys {
		gt := gtOf[imgs[i/3]]
		r := c.mustRun(t, "debug", "metrics", "--pred", p, "--gt", gt, "--json")
		var got map[string]*float64
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("debug metrics --json: %v\n%s", err, r.stdout)
		}
		pred, err := npy.LoadTensor(p)
		if err != nil {
			t.Fatal(err)
		}
		g, err := data.LoadGT(gt)
		if err != nil {
			t.Fatal(err)
		}
		want, err := data.Evaluate(pred, g)
		if err != nil {
			t.Fatal(err)
		}
		for k, w := range map[string]float64{"kld": want.KLD, "sim": want.SIM, "nss": want.NSS} {
			if got[k] == nil || *got[k] != w {
				t.Errorf("debug metrics %s: %s = %v, data.Evaluate %v", filepath.Base(p), k, got[k], w)
			}
		}
		cliScores[p] = map[string]float64{"kld": want.KLD, "sim": want.SIM, "nss": want.NSS}
	}

	// eval's per-image figures for the same images are the same numbers.
	perImage := filepath.Join(c.dir, "per_image.jsonl")
	c.mustRun(t, "eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1,
		"--vocab", c.voc, "--per-image", perImage, "--batch-size", "1")
	b, err := os.ReadFile(perImage)
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	for _, l := range lines(string(b)) {
		var rec struct {
			Image, Action string
			Scores        map[string]map[string]float64
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("--per-image: %v", err)
		}
		for i, p := range imgs {
			if rec.Image != p || rec.Action != "hold" {
				continue
			}
			matched++
			for j, m := range []string{"cam", "ree", "rem"} {
				want := cliScores[npys[3*i+j]]
				for k, w := range want {
					if rec.Scores[m][k] != w {
						t.Errorf("eval --per-image %s %s %s = %v; predict + debug metrics %v", filepath.Base(p), m, k, rec.Scores[m][k], w)
					}
				}
			}
		}
	}
	if matched != len(imgs) {
		t.Errorf("eval --per-image: %d of %v among its lines, want all", matched, imgs)
	}

	// A folder and a glob pattern, in one batch: the same maps as batch 1 within 1e-6 relative.
	dir := filepath.Join(c.dir, "pred_dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range imgs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, arg := range []string{dir, filepath.Join(dir, "*"+filepath.Ext(imgs[0]))} {
		out2 := filepath.Join(c.dir, "pred_batched")
		os.RemoveAll(out2)
		c.mustRun(t, "predict", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--action", "hold", "--out", out2,
			"--image", arg, "--batch-size", "2")
		for _, p := range npys {
			want, err := npy.LoadTensor(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := npy.LoadTensor(filepath.Join(out2, filepath.Base(p)))
			if err != nil {
				t.Errorf("predict --image %s: %v", arg, err)
				continue
			}
			scale := want.Abs().Max().Item()
			if d := got.Sub(want).Abs().Max().Item(); d > 1e-6*scale {
				t.Errorf("predict --image %s --batch-size 2: %s differs from batch 1 by %.3g (scale %.3g)", arg, filepath.Base(p), d, scale)
			}
		}
	}

	// The precision options: tf32 on the CPU is ignored with a notice; bf16 backbones run (their
	// maps are not parity, docs/CONFIG.md, so only their shape is checked here).
	out3 := filepath.Join(c.dir, "pred_bf16")
	r := c.mustRun(t, "predict", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--action", "hold", "--out", out3,
		"--image", imgs[0], "--tf32", "--backbone-dtype", "bf16")
	if !strings.Contains(r.stderr, "--tf32: true has no effect on the CPU") {
		t.Errorf("predict --tf32 on the CPU: stderr %q, want the notice that it is ignored", r.stderr)
	}
	stem := strings.TrimSuffix(filepath.Base(imgs[0]), filepath.Ext(imgs[0]))
	if a, err := npy.LoadTensor(filepath.Join(out3, stem+"_hold_ree.npy")); err != nil {
		t.Errorf("predict --backbone-dtype bf16: %v", err)
	} else if s := a.Shape(); len(s) != 2 || s[0] != 14 || a.DType() != torch.Float32 {
		t.Errorf("predict --backbone-dtype bf16: map %v %v, want float32 (14, 14)", a.DType(), s)
	}
}

// errCase is a command that must fail.
type errCase struct {
	name  string
	args  []string
	first []string // the first line names the problem: it holds all of these
	all   []string // the whole message holds these too
}

// testErrors checks that bad input ends with exit code 1 and one error whose first line names
// the problem (indented detail lines may follow), never a panic.
func (c *cliEnv) testErrors(t *testing.T) {
	corrupt := filepath.Join(c.dir, "corrupt.jpg")
	good, err := os.ReadFile(c.testImages[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corrupt, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	typo := filepath.Join(c.dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("epochs: 1\nbatch_sise: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A HICO-IIF layout (no Seen/ level) holding the synthetic test images of hold and cut_with,
	// both HICO-IIF classes.
	hico := filepath.Join(c.dir, "hico")
	copyTree(t, filepath.Join(c.root, "Seen", "testset"), filepath.Join(hico, "testset"))
	missing := filepath.Join(c.dir, "no_such_root")
	ckpt := []string{"--checkpoint", c.checkpointTrain1, "--vocab", c.voc}
	evalArgs := func(extra ...string) []string {
		return append(append([]string{"eval", "--dataset", "agd20k-seen", "--data-root", c.root}, ckpt...), extra...)
	}
	trainArgs := func(extra ...string) []string {
		return append(append(append([]string{}, c.trainFlags...), "--epochs", "1", "--out-dir", filepath.Join(c.dir, "never")), extra...)
	}

	inf := filepath.Join(c.dir, "inf.yaml")
	if err := os.WriteFile(inf, []byte("lr: .inf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(c.dir, "evil.pth")
	evilCheckpoint(t, evil)
	predictArgs := func(extra ...string) []string {
		return append(append([]string{"predict", "--image", c.testImages[0], "--action", "hold", "--out", filepath.Join(c.dir, "p")}, ckpt...), extra...)
	}

	cases := []errCase{
		// Integers are integers, numbers finite, sizes and counts bounded (the limit named).
		{"fractional epochs", trainArgs("--epochs", "2.9"), []string{"--epochs", "2.9", "want an integer"}, nil},
		{"exponent batch size", trainArgs("--batch-size", "1e3"), []string{"--batch-size", "1e3", "want an integer"}, nil},
		{"infinite lr in a config", append(append([]string{"train", "--config", inf}, c.weights()...), "--data-root", c.root),
			[]string{inf, "lr", "want a finite number, got .inf"}, nil},
		{"print-config validates", append(trainArgs("--batch-size", "0"), "--print-config"), []string{"batch_size", "[1, 1024]"}, nil},
		{"huge crop", trainArgs("--crop-size", "99984", "--resize-size", "99984"), []string{"resize_size", "99984", "2048"}, nil},
		{"huge predict size", predictArgs("--size", "100000"), []string{"--size 100000", "1024"}, nil},
		{"num_exo over the grid", trainArgs("--num-exo", "50"), []string{"num_exo", "≤ 4", "exo_maps: released"}, nil},
		{"train threads 10000", trainArgs("--threads", "10000"), []string{"threads", "10000", "[0, 256]"}, nil},
		{"eval threads -1", evalArgs("--threads", "-1"), []string{"--threads -1", "[0, 256]"}, nil},
		{"predict threads 10000", predictArgs("--threads", "10000"), []string{"--threads 10000", "[0, 256]"}, nil},
		{"eval workers", evalArgs("--workers", "100000"), []string{"--workers 100000", "[0, 256]"}, nil},
		// A pickle with code in it: refused, saying so.
		{"checkpoint with code", []string{"eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", evil},
			[]string{evil, "os.system", "a checkpoint never contains", "nothing in it was executed"}, nil},
		{"predict unknown action", append([]string{"predict", "--image", c.testImages[0], "--action", "holdd", "--out", filepath.Join(c.dir, "p")}, ckpt...),
			[]string{`"holdd"`, "valid actions", "hold", "cut_with", "type_on"}, nil},
		{"eval dataset typo", []string{"eval", "--dataset", "agd20k-sen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1},
			[]string{"agd20k-sen", "agd20k-seen", "hico-iif"}, nil},
		{"eval missing data root", append([]string{"eval", "--dataset", "agd20k-seen", "--data-root", missing}, ckpt...),
			[]string{missing}, nil},
		{"train missing data root", trainArgs("--data-root", missing), []string{missing}, nil},
		{"config key typo", append([]string{"train", "--config", typo}, c.weights()...), []string{"batch_sise"}, []string{"batch_size"}},
		{"batch size 0", trainArgs("--batch-size", "0"), []string{"batch_size", "1"}, nil},
		{"flag not a number", trainArgs("--epochs", "two"), []string{"--epochs", "two"}, nil},
		{"checkpoint for other classes", append([]string{"eval", "--dataset", "hico-iif", "--data-root", hico}, ckpt...),
			[]string{c.checkpointTrain1}, []string{"aff_classifier.weight", "[36 384 1 1]", "[10 384 1 1]"}},
		{"predict corrupt image", append([]string{"predict", "--image", corrupt, "--action", "hold", "--out", filepath.Join(c.dir, "p")}, ckpt...),
			[]string{corrupt}, nil},
		{"predict pattern without a match", append([]string{"predict", "--image", filepath.Join(c.dir, "*.nothing"), "--action", "hold", "--out", filepath.Join(c.dir, "p")}, ckpt...),
			[]string{"*.nothing", "no file matches"}, nil},
		{"predict missing image", append([]string{"predict", "--image", missing, "--action", "hold", "--out", filepath.Join(c.dir, "p")}, ckpt...),
			[]string{missing, "no such file"}, nil},
		{"eval backbone dtype int8", evalArgs("--backbone-dtype", "int8"), []string{"--backbone-dtype", `"int8"`, "float32, bf16, fp16"}, nil},
		{"train backbone dtype int8", trainArgs("--backbone-dtype", "int8"), []string{"backbone_dtype", `"int8"`, "float32, bf16, fp16"}, nil},
		{"eval negative batch size", evalArgs("--batch-size", "-1"), []string{"--batch-size", "-1"}, nil},
		{"train over an existing run", append(append([]string{}, c.trainFlags...), "--epochs", "1", "--out-dir", c.run1),
			[]string{c.run1, "--resume"}, nil},
		{"resume with other settings", append(append([]string{}, c.trainFlags...), "--epochs", "1", "--out-dir", c.run1, "--resume", "--batch-size", "4"),
			[]string{"--resume", "config.yaml"}, nil},
	}
	if !torch.CUDAIsAvailable() {
		cases = append(cases,
			errCase{"train on cuda without a GPU", trainArgs("--device", "cuda"), []string{"cuda", "CUDA is not available"}, nil},
			errCase{"eval on cuda:1 without a GPU", evalArgs("--device", "cuda:1"), []string{"cuda:1", "CUDA is not available", "the only device is cpu"}, nil},
			errCase{"bench step on cuda without a GPU", []string{"bench", "step", "--device", "cuda", "--against", "released", "--ref", c.dir, "--python", "python3"},
				[]string{"cuda:0", "CUDA is not available"}, nil})
	} else if n := torch.CUDADeviceCount(); n <= 7 {
		cases = append(cases,
			errCase{"eval on cuda:7", evalArgs("--device", "cuda:7"), []string{"cuda:7", fmt.Sprintf("%d CUDA device(s)", n), "cuda:0"}, nil})
	}
	cases = append(cases,
		errCase{"bench step against released without --ref", []string{"bench", "step", "--against", "released", "--python", "python3"}, []string{"--ref"}, nil},
		errCase{"bench step against an unknown side", []string{"bench", "step", "--against", "mine", "--python", "python3"}, []string{"--against", "ours or released"}, nil})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(t, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstderr:\n%s", r.code, tail(r.stderr))
			}
			ls := lines(r.stderr)
			if len(ls) == 0 {
				t.Fatal("no error message on stderr")
			}
			if !strings.HasPrefix(ls[0], "affgd: ") {
				t.Errorf("stderr starts with %q, want the error line `affgd: ...`", ls[0])
			}
			for _, l := range ls[1:] {
				if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
					t.Errorf("stderr holds more than one message: %q after %q", l, ls[0])
				}
			}
			for _, w := range tc.first {
				if !strings.Contains(ls[0], w) {
					t.Errorf("error line %q does not name %q", ls[0], w)
				}
			}
			for _, w := range tc.all {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error %q does not name %q", r.stderr, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(c.dir, "pwned")); err == nil {
		t.Error("the checkpoint's os.system ran")
	}
	if _, err := os.Stat(filepath.Join(c.dir, "never")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(c.dir, "never"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if len(names) > 0 {
			t.Errorf("failed train runs left files in their out_dir: %v", names)
		}
	}
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMain checks $AFFGD_TEST_DEVICE first (internal/testdev): a device that cannot be used stops
// the suite with one line; a usable one is passed to every computing command (onTestDevice).
func TestMain(m *testing.M) { testdev.Main(m) }
