package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/internal/runlock"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/synth"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/ptfile"
	"github.com/affgd/affgd/train"
)

// recorder is a UI that keeps what it is told and can cancel the run at a given step.
type recorder struct {
	logs   []string
	steps  []StepStats
	onStep func(StepStats) // when set, called after each step
	epochs []EpochLog
	cancel func()
	stopAt [2]int   // epoch, step after which to cancel; -1 = never
	live   *[]int64 // when set, the live tensor count at each epoch's end
}

func (r *recorder) Log(msg string)            { r.logs = append(r.logs, msg) }
func (r *recorder) EpochStart(_, _, _, _ int) {}
func (r *recorder) EvalStart(_, _ int)        {}
func (r *recorder) EvalProgress(_, _ int)     {}
func (r *recorder) EpochEnd(l EpochLog) {
	r.epochs = append(r.epochs, l)
	if r.live != nil {
		*r.live = append(*r.live, testref.Settle(torch.LiveTensors))
	}
}
func (r *recorder) Step(s StepStats) {
	r.steps = append(r.steps, s)
	if r.onStep != nil {
		r.onStep(s)
	}
	if r.cancel != nil && s.Epoch == r.stopAt[0] && s.Step == r.stopAt[1] {
		r.cancel()
	}
}

var (
	synthOnce sync.Once
	synthRes  *synth.Result
	synthErr  error
)

// smallSynth writes one small synthetic dataset and tiny backbones for the package's tests.
func smallSynth(t *testing.T) *synth.Result {
	t.Helper()
	synthOnce.Do(func() {
		dir, err := os.MkdirTemp("", "affgd-trainer-synth")
		if err != nil {
			synthErr = err
			return
		}
		synthRes, synthErr = synth.Write(filepath.Join(dir, "s"), synth.DefaultOptions())
	})
	if synthErr != nil {
		t.Fatal(synthErr)
	}
	return synthRes
}

// smallConfig is a short, cheap run on the synthetic data.
func smallConfig(t *testing.T, s *synth.Result) Config {
	c := DefaultConfig()
	c.DataRoot, c.DINO, c.CLIP, c.Vocab = s.DataRoot, s.DINO, s.CLIP, s.Vocab
	c.OutDir = t.TempDir()
	c.ResizeSize, c.CropSize = 72, 64
	c.BatchSize, c.Epochs, c.MaxSteps, c.TestLimit = 4, 2, 3, 4
	c.Workers = 2
	// The test device ($AFFGD_TEST_DEVICE); on CUDA with deterministic algorithms, so that the
	// resumed run can equal the uninterrupted one bit for bit (docs/CONFIG.md, deterministic).
	c.Device = testdev.Device(t).String()
	c.Deterministic = testdev.IsCUDA()
	return c
}

func TestMain(m *testing.M) { testdev.Main(m) }

// An interrupted run resumed gives the uninterrupted run's weights, log and state.
func TestResumeEqualsUninterrupted(t *testing.T) {
	s := smallSynth(t)
	full := smallConfig(t, s)
	if err := Run(context.Background(), full, false, &recorder{}); err != nil {
		t.Fatal(err)
	}

	cut := full
	cut.OutDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{cancel: cancel, stopAt: [2]int{1, 0}} // after the first step of epoch 2
	err := Run(ctx, cut, false, rec)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("want ErrInterrupted, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(cut.OutDir, StateFile)); err != nil {
		t.Fatalf("no state after the interruption: %v", err)
	}
	// Without --resume the saved run is not overwritten.
	if err := Run(context.Background(), cut, false, &recorder{}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("restarting over a saved run: want an error pointing to --resume, got %v", err)
	}
	// A resume with another training setting is refused.
	other := cut
	other.LR = 0.01
	if err := Run(context.Background(), other, true, &recorder{}); err == nil || !strings.Contains(err.Error(), "configuration differs") {
		t.Fatalf("resume with another lr: got %v", err)
	}
	// A state.pt of another run (lr 0.005, seed 7) in this run's folder is refused before
	// anything runs.
	forged := t.TempDir()
	copyDir(t, cut.OutDir, forged)
	forgeStateConfig(t, filepath.Join(forged, StateFile), func(c *Config) { c.LR, c.Seed = 0.005, 7 })
	other = cut
	other.OutDir = forged
	err = Run(context.Background(), other, true, &recorder{})
	for _, want := range []string{StateFile, "another configuration", "lr 0.005 there, 0.001 now", "seed 7 there, 0 now"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resume with another run's state: error %v, want one naming %q", err, want)
		}
	}
	// While another holder has the folder, a run is refused, naming the holder's pid.
	lock, err := runlock.Acquire(cut.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), cut, true, &recorder{})
	lock.Release()
	if err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("resume of a locked folder: %v, want an error naming the holder's pid", err)
	}
	// Temporaries of writes a kill interrupted are removed on resume.
	stale := []string{"." + StateFile + ".tmp123456", "." + PlotFile + ".tmp42", "." + LastFile + ".tmp7"}
	for _, n := range stale {
		if err := os.WriteFile(filepath.Join(cut.OutDir, n), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The run moved to another folder (cp -a) resumes there; machine settings may change.
	moved := filepath.Join(t.TempDir(), "moved")
	copyDir(t, cut.OutDir, moved)
	cut.OutDir, cut.Workers = moved, 1
	if err := Run(context.Background(), cut, true, &recorder{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join(moved, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("resume left the stale temporary %s (%v)", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(moved, runlock.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run left its lock file: %v", err)
	}

	a := readWeights(t, filepath.Join(full.OutDir, LastFile))
	b := readWeights(t, filepath.Join(cut.OutDir, LastFile))
	if len(a) != len(b) {
		t.Fatalf("checkpoints hold %d and %d tensors", len(a), len(b))
	}
	for k, x := range a {
		if !bytes.Equal(x, b[k]) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", k)
		}
	}
	la, lb := readLog(t, full.OutDir), readLog(t, cut.OutDir)
	if len(la) != 2 || len(lb) != 2 {
		t.Fatalf("log lines: %d and %d, want 2", len(la), len(lb))
	}
	for i := range la {
		la[i].Seconds, lb[i].Seconds = 0, 0
		ja, _ := json.Marshal(la[i])
		jb, _ := json.Marshal(lb[i])
		if !bytes.Equal(ja, jb) {
			t.Errorf("epoch %d log differs:\n%s\n%s", i+1, ja, jb)
		}
	}
	for _, f := range []string{BestFile, PlotFile, ConfigFile} {
		if _, err := os.Stat(filepath.Join(cut.OutDir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}

	// A finished run resumed with no more epochs redraws its log and plot (a kill may have left
	// them behind the state).
	logBefore, _ := os.ReadFile(filepath.Join(cut.OutDir, LogFile))
	os.Remove(filepath.Join(cut.OutDir, PlotFile))
	os.WriteFile(filepath.Join(cut.OutDir, LogFile), nil, 0o644)
	if err := Run(context.Background(), cut, true, &recorder{}); err != nil {
		t.Fatal(err)
	}
	if logAfter, _ := os.ReadFile(filepath.Join(cut.OutDir, LogFile)); !bytes.Equal(logAfter, logBefore) {
		t.Errorf("resume did not rewrite the log:\n%s\nwant\n%s", logAfter, logBefore)
	}
	if st, err := os.Stat(filepath.Join(cut.OutDir, PlotFile)); err != nil || st.Size() == 0 {
		t.Errorf("resume did not redraw the plot: %v", err)
	}
}

// With state_every_minutes the state is saved within an epoch: a copy of the folder taken after a
// step (what a kill -9 leaves) resumes from that step and ends as the uninterrupted run.
func TestStateEveryMinutes(t *testing.T) {
	s := smallSynth(t)
	full := smallConfig(t, s)
	if err := Run(context.Background(), full, false, &recorder{}); err != nil {
		t.Fatal(err)
	}
	run := full
	run.OutDir = t.TempDir()
	run.StateEvery = 1e-9 // before every step
	killed := filepath.Join(t.TempDir(), "killed")
	rec := &recorder{onStep: func(st StepStats) {
		if st.Epoch == 1 && st.Step == 1 {
			copyDir(t, run.OutDir, killed)
		}
	}}
	if err := Run(context.Background(), run, false, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(killed); err != nil {
		t.Fatalf("no copy was taken: %v", err)
	}
	run.OutDir = killed
	rec = &recorder{}
	if err := Run(context.Background(), run, true, rec); err != nil {
		t.Fatal(err)
	}
	// The state was saved before the step in progress: only that step is redone.
	if want := "resuming at epoch 2, step 1"; !slices.Contains(rec.logs, want) {
		t.Errorf("logs %q, want %q", rec.logs, want)
	}
	if len(rec.steps) != full.MaxSteps-1 {
		t.Errorf("the resumed run trained %d steps, want %d", len(rec.steps), full.MaxSteps-1)
	}
	a := readWeights(t, filepath.Join(full.OutDir, LastFile))
	b := readWeights(t, filepath.Join(killed, LastFile))
	for k, x := range a {
		if !bytes.Equal(x, b[k]) {
			t.Errorf("%s differs between the uninterrupted and the killed-and-resumed run", k)
		}
	}
}

// copyDir copies the regular files of src (one level) into dst, keeping their modes.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// forgeStateConfig rewrites the configuration stored in a state file.
func forgeStateConfig(t *testing.T, path string, change func(*Config)) {
	t.Helper()
	entries, err := ptfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Name != "config" {
			continue
		}
		c, err := ParseConfig(e.Tensor.Data)
		if err != nil {
			t.Fatal(err)
		}
		change(&c)
		y := c.YAML()
		entries[i].Tensor = &ptfile.Tensor{DType: ptfile.Uint8, Shape: []int64{int64(len(y))}, Data: y}
	}
	if err := ptfile.Write(path, entries); err != nil {
		t.Fatal(err)
	}
}

// readWeights returns each tensor of a checkpoint as raw bytes.
func readWeights(t *testing.T, path string) map[string][]byte {
	t.Helper()
	m, err := train.Load(train.Files{Checkpoint: path, Vocab: smallSynth(t).Vocab, Divide: data.Seen})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	sd, err := m.StateDict()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sd {
		out[n.Name] = n.Tensor.Bytes()
	}
	return out
}

func readLog(t *testing.T, dir string) []EpochLog {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []EpochLog
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var l EpochLog
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// Training must beat the untrained model on the cam map's KLD on the synthetic test split: a
// regression check that the method learns, on a smaller setting than `make demo`.
func TestTrainingBeatsUntrained(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a minute")
	}
	s := smallSynth(t)
	c := smallConfig(t, s)
	c.Epochs, c.MaxSteps, c.TestLimit = 3, 0, 0
	c.ResizeSize, c.CropSize = 128, 112
	div := data.Seen
	ts, err := data.OpenTest(c.DataRoot, div)
	if err != nil {
		t.Fatal(err)
	}
	untrained, err := train.Load(train.Files{DINO: c.DINO, CLIP: c.CLIP, Vocab: c.Vocab, Seed: c.Seed, Divide: div})
	if err != nil {
		t.Fatal(err)
	}
	before, err := evaluate.Run(untrained, ts, evaluate.Options{Size: c.CropSize})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if err := Run(context.Background(), c, false, rec); err != nil {
		t.Fatal(err)
	}
	last := rec.epochs[len(rec.epochs)-1]
	kb, ka := before.Overall["cam"].KLD, last.Eval.Overall["cam"].KLD
	t.Logf("cam KLD untrained %.4f, after %d epochs %.4f (ree %.4f, rem %.4f)", kb, c.Epochs, ka,
		last.Eval.Overall["ree"].KLD, last.Eval.Overall["rem"].KLD)
	if !(ka < kb) {
		t.Fatalf("training did not improve cam KLD: untrained %.4f, trained %.4f", kb, ka)
	}
}

// A run holds flat memory: after the first epoch (which fills the text-feature cache), every
// epoch ends with the same number of live tensors — steps, evaluation and checkpoints release
// everything they make.
func TestRunHoldsFlatMemory(t *testing.T) {
	s := smallSynth(t)
	c := smallConfig(t, s)
	c.Epochs = 4
	var live []int64
	if err := Run(context.Background(), c, false, &recorder{live: &live}); err != nil {
		t.Fatal(err)
	}
	t.Logf("live tensors at each epoch's end: %v", live)
	for i := 2; i < len(live); i++ {
		if live[i] != live[1] {
			t.Fatalf("live tensors grow from epoch to epoch: %v", live)
		}
	}
}

// A CUDA out-of-memory error in a step (simulated with libtorch's message: it cannot be provoked
// without a GPU) gives one line naming the batch size and the memory requested and free, leaves
// the last checkpoint and state as they were, and --resume then finishes the run.
func TestOutOfMemoryKeepsTheLastCheckpoint(t *testing.T) {
	s := smallSynth(t)
	cfg := smallConfig(t, s)
	const msg = "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.15 GiB of which 512.00 MiB is free. " +
		"Including non-PyTorch memory, this process has 78.6 GiB memory in use."
	stepFault = func(epoch, step int) error {
		if epoch == 1 && step == 1 {
			return &torch.Error{Op: "conv2d", Msg: msg}
		}
		return nil
	}
	defer func() { stepFault = nil }()
	err := Run(context.Background(), cfg, false, &recorder{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"epoch 2 step 2", "out of memory on " + cfg.Device, "batch_size 4", "1.50 GiB requested", "512.00 MiB free of 79.15 GiB", "--resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "Including non-PyTorch") {
		t.Errorf("not one line of our own: %q", err)
	}
	last := readWeights(t, filepath.Join(cfg.OutDir, LastFile))
	stepFault = nil
	logBefore := readLog(t, cfg.OutDir)
	if len(logBefore) != 1 {
		t.Fatalf("the log holds %d epochs after the failure in epoch 2, want 1", len(logBefore))
	}
	// The checkpoint on disk is epoch 1's: a fresh run's epoch 1 gives the same bytes.
	ref := smallConfig(t, s)
	ref.Epochs = 1
	if err := Run(context.Background(), ref, false, &recorder{}); err != nil {
		t.Fatal(err)
	}
	want := readWeights(t, filepath.Join(ref.OutDir, LastFile))
	for k, v := range want {
		if !bytes.Equal(last[k], v) {
			t.Fatalf("%s of last.pth changed by the failed step", k)
		}
	}
	if err := Run(context.Background(), cfg, true, &recorder{}); err != nil {
		t.Fatalf("--resume after the out-of-memory error: %v", err)
	}
	if got := readLog(t, cfg.OutDir); len(got) != cfg.Epochs {
		t.Errorf("after the resume the log holds %d epochs, want %d", len(got), cfg.Epochs)
	}
}
