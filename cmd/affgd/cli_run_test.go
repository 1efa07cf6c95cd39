package main

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is an affgd process running in the background whose stderr is watched.
type proc struct {
	cmd  *exec.Cmd
	args []string
	mu   sync.Mutex
	err  bytes.Buffer
	done chan struct{} // closed when stderr is at its end
}

// start starts the binary with args in the scratch folder.
func (c *cliEnv) start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(c.bin, args...), args: args, done: make(chan struct{})}
	p.cmd.Dir = c.dir
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := pipe.Read(buf)
			p.mu.Lock()
			p.err.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err.String()
}

// waitFor waits until stderr holds s; false when the process ended first or a minute passed.
func (p *proc) waitFor(s string) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stderr(), s) {
			return true
		}
		select {
		case <-p.done:
			return strings.Contains(p.stderr(), s)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return false
}

// wait waits for the process and returns its exit code (-1 when killed by a signal).
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	<-p.done
	err := p.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		checkClean(t, p.args, p.stderr())
		return ee.ExitCode()
	}
	t.Fatal(err)
	return 0
}

// testRuntimeAlone runs predict and eval with an empty environment and an empty HOME: the binary
// needs nothing but libtorch (found through its rpath) — no venv, no vocabulary file.
func (c *cliEnv) testRuntimeAlone(t *testing.T) {
	home := filepath.Join(c.dir, "empty_home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	bare := func(args ...string) result {
		cmd := exec.Command(c.bin, args...)
		cmd.Dir, cmd.Env = c.dir, []string{"HOME=" + home}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		r := result{stdout: out.String(), stderr: errb.String()}
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 {
			t.Fatalf("env -i HOME=%s affgd %s: exit %d\n%s", home, strings.Join(args, " "), r.code, tail(r.stderr))
		}
		return r
	}
	out := filepath.Join(c.dir, "bare_pred")
	r := bare("predict", "--image", c.holdImages[0], "--action", "hold", "--checkpoint", c.checkpointTrain1, "--out", out)
	if !strings.Contains(r.stdout, "_hold_{cam,ree,rem}") {
		t.Errorf("predict: %s", r.stdout)
	}
	stem := strings.TrimSuffix(filepath.Base(c.holdImages[0]), filepath.Ext(c.holdImages[0]))
	for _, m := range []string{"cam", "ree", "rem"} {
		if _, err := os.Stat(filepath.Join(out, stem+"_hold_"+m+".png")); err != nil {
			t.Error(err)
		}
	}
	r = bare("eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1, "--limit", "2")
	if !strings.Contains(r.stdout, "KLD") {
		t.Errorf("eval: %s", r.stdout)
	}
	// The same figures as with the vocabulary file the tests pass elsewhere.
	withFile := c.mustRun(t, "eval", "--dataset", "agd20k-seen", "--data-root", c.root, "--checkpoint", c.checkpointTrain1, "--limit", "2", "--vocab", c.voc)
	table := func(s string) string { return s[strings.Index(s, "\n")+1:] } // without the speed line
	if table(r.stdout) != table(withFile.stdout) {
		t.Errorf("eval with the embedded vocabulary:\n%s\nwith %s:\n%s", r.stdout, c.voc, withFile.stdout)
	}
}

// testLock: while one train holds out_dir, a second train (or --resume) on it fails at once with
// one error naming the holder's pid; the holder's run is unaffected.
func (c *cliEnv) testLock(t *testing.T) {
	out := filepath.Join(c.dir, "locked")
	flags := append(append([]string{}, c.trainFlags...), "--epochs", "2", "--out-dir", out)
	a := c.start(t, flags...)
	if !a.waitFor(" loss ") {
		t.Fatalf("the first run reported no step:\n%s", tail(a.stderr()))
	}
	for _, extra := range [][]string{nil, {"--resume"}} {
		r := c.run(t, append(append([]string{}, flags...), extra...)...)
		ls := lines(r.stderr)
		if r.code != 1 || len(ls) != 1 {
			t.Errorf("second train %v: exit %d, stderr\n%s; want exit 1 and one line", extra, r.code, r.stderr)
			continue
		}
		for _, want := range []string{out, "in use", fmt.Sprintf("pid %d", a.cmd.Process.Pid)} {
			if !strings.Contains(ls[0], want) {
				t.Errorf("second train %v: %q does not name %q", extra, ls[0], want)
			}
		}
	}
	if code := a.wait(t); code != 0 {
		t.Fatalf("the first run: exit %d\n%s", code, tail(a.stderr()))
	}
	if ref := filepath.Join(c.dir, "uninterrupted", "last.pth"); fileExists(ref) { // written by testInterrupt
		sameCheckpoint(t, c, ref, filepath.Join(out, "last.pth"))
	}
	if _, err := os.Stat(filepath.Join(out, ".affgd.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the finished run left its lock file (%v)", err)
	}
}

var (
	stepLine   = regexp.MustCompile(`epoch (\d+) step (\d+)/(\d+)`)
	resumeLine = regexp.MustCompile(`resuming at epoch (\d+), step (\d+)`)
)

// stepsDone is the number of steps (over all epochs, steps per epoch n) that stderr reports done.
func stepsDone(stderr string, n int) int {
	done := 0
	for _, m := range stepLine.FindAllStringSubmatch(stderr, -1) {
		e, _ := strconv.Atoi(m[1])
		s, _ := strconv.Atoi(m[2])
		done = max(done, (e-1)*n+s)
	}
	return done
}

// testKill sends SIGKILL to a training at several points (after steps of both epochs, during
// both evaluations), resumes each time, and checks that the result is the uninterrupted run's and
// that with state_every_minutes below a step's time each resume redoes at most the step in
// progress. The last resume runs in a copy of the folder (cp -a), with stale temporaries planted.
func (c *cliEnv) testKill(t *testing.T) {
	flags := append(append([]string{}, c.trainFlags...), "--epochs", "2", "--batch-size", "1")
	ref := filepath.Join(c.dir, "kill_ref")
	c.mustRun(t, append(flags, "--out-dir", ref)...)
	out := filepath.Join(c.dir, "killed")
	// 0.0001 min = 6 ms: the state is saved before every step.
	args := append(flags, "--out-dir", out, "--state-every-minutes", "0.0001")
	n, prevDone, prevPoint := 0, 0, "" // steps per epoch; steps reported done before the last kill, and where it was
	checkResumed := func(i int, se string) {
		t.Helper()
		m := resumeLine.FindStringSubmatch(se)
		if m == nil {
			t.Fatalf("resume %d did not say where it resumed:\n%s", i, tail(se))
		}
		e, _ := strconv.Atoi(m[1])
		s, _ := strconv.Atoi(m[2])
		if at := (e-1)*n + s; at < prevDone-1 {
			t.Errorf("resume %d at step %d of the run, but %d were reported done before the kill: more than the step in progress redone", i, at, prevDone)
		}
		t.Logf("SIGKILL at %q with %d steps done; then %s", prevPoint, prevDone, m[0])
	}
	for i, point := range []string{"epoch 1 step 2/", "evaluating epoch 1", "epoch 2 step 1/", "epoch 2 step 3/", "evaluating epoch 2"} {
		run := args
		if i > 0 {
			run = append(append([]string{}, args...), "--resume")
		}
		p := c.start(t, run...)
		reached := p.waitFor(point)
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		code := p.wait(t)
		se := p.stderr()
		if m := regexp.MustCompile(`epoch 1/2: (\d+) steps`).FindStringSubmatch(se); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		if !reached && code != -1 {
			t.Fatalf("kill %d (%s): the run ended first with exit %d\n%s", i, point, code, tail(se))
		}
		if i > 0 {
			checkResumed(i, se)
		}
		prevDone, prevPoint = stepsDone(se, n), point
		if m := resumeLine.FindStringSubmatch(se); m != nil {
			e, _ := strconv.Atoi(m[1])
			s, _ := strconv.Atoi(m[2])
			prevDone = max(prevDone, (e-1)*n+s)
		}
	}
	// The killed run moved (cp -a) and resumed to the end there, with stale temporaries a kill
	// during a write leaves.
	moved := filepath.Join(c.dir, "killed_moved")
	if b, err := exec.Command("cp", "-a", out, moved).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, b)
	}
	for _, n := range []string{".state.pt.tmp123", ".last.pth.tmp456", ".training.png.tmp789"} {
		if err := os.WriteFile(filepath.Join(moved, n), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := c.mustRun(t, append(append(append([]string{}, flags...), "--out-dir", moved, "--state-every-minutes", "0.0001"), "--resume")...)
	checkResumed(5, r.stderr)
	for _, name := range []string{"last.pth", "best.pth"} {
		sameCheckpoint(t, c, filepath.Join(ref, name), filepath.Join(moved, name))
	}
	b, err := os.ReadFile(filepath.Join(moved, "metrics.jsonl"))
	if err != nil || len(lines(string(b))) != 2 {
		t.Errorf("metrics.jsonl: %d lines (%v), want 2", len(lines(string(b))), err)
	}
	entries, _ := os.ReadDir(moved)
	known := map[string]bool{"last.pth": true, "best.pth": true, "state.pt": true, "metrics.jsonl": true, "training.png": true, "config.yaml": true}
	for _, e := range entries {
		if !known[e.Name()] {
			t.Errorf("the resumed run left %s in out_dir", e.Name())
		}
	}
}

// testResumeOtherState: a state.pt of another run (lr 0.005, seed 7) in a run whose config.yaml
// says lr 0.001 and seed 0 is refused before anything runs.
func (c *cliEnv) testResumeOtherState(t *testing.T) {
	other := filepath.Join(c.dir, "other_run")
	c.mustRun(t, append(append([]string{}, c.trainFlags...), "--epochs", "1", "--lr", "0.005", "--seed", "7", "--out-dir", other)...)
	mixed := filepath.Join(c.dir, "mixed")
	copyTree(t, c.run1, mixed)
	b, err := os.ReadFile(filepath.Join(other, "state.pt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mixed, "state.pt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.run(t, append(append([]string{}, c.trainFlags...), "--epochs", "2", "--out-dir", mixed, "--resume")...)
	ls := lines(r.stderr)
	if r.code != 1 || len(ls) != 1 {
		t.Fatalf("resume with another run's state: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"state.pt", "lr 0.005 there, 0.001 now", "seed 7 there, 0 now"} {
		if !strings.Contains(ls[0], want) {
			t.Errorf("%q does not name %q", ls[0], want)
		}
	}
	if strings.Contains(r.stderr, "data:") {
		t.Errorf("the refused resume loaded the data first:\n%s", r.stderr)
	}
}

// testPredictSameNames: two images with the same file name in different folders get outputs of
// their own, and OUT/index.tsv says which is which.
func (c *cliEnv) testPredictSameNames(t *testing.T) {
	a, b := filepath.Join(c.dir, "same", "a", "one.jpg"), filepath.Join(c.dir, "same", "b", "one.png")
	for _, p := range []string{a, b} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(c.holdImages[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(c.holdImages[1])
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(c.dir, "same_pred")
	r := c.mustRun(t, "predict", "--image", a, "--image", b, "--action", "hold", "--checkpoint", c.checkpointTrain1, "--out", out)
	for _, want := range []string{a + ": " + out + "/one_hold_", b + ": " + out + "/one_2_hold_"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("predict's output does not say %q:\n%s", want, r.stdout)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 13 {
		t.Errorf("predict wrote %d files, want 2 × 6 and index.tsv", len(entries))
	}
	idx, err := os.ReadFile(filepath.Join(out, "index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	want := "prefix\timage\taction\none_hold\t" + a + "\thold\none_2_hold\t" + b + "\thold\n"
	if string(idx) != want {
		t.Errorf("index.tsv:\n%s\nwant\n%s", idx, want)
	}
	// The two maps differ: neither overwrote the other.
	x, _ := os.ReadFile(filepath.Join(out, "one_hold_cam.npy"))
	y, _ := os.ReadFile(filepath.Join(out, "one_2_hold_cam.npy"))
	if bytes.Equal(x, y) {
		t.Error("one_hold_cam.npy and one_2_hold_cam.npy are the same")
	}
}

// evilCheckpoint writes a torch.save zip whose pickle calls os.system (what a malicious
// checkpoint's __reduce__ produces).
func evilCheckpoint(t *testing.T, path string) {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("evil/data.pkl")
	w.Write([]byte("\x80\x02cos\nsystem\nX\x0b\x00\x00\x00touch pwned\x85R."))
	zw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
