package sweep

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/affgd/affgd/trainer"
)

// Status of a point's run folder.
type Status string

// The statuses of a point.
const (
	Finished    Status = "finished"    // every epoch logged
	Partial     Status = "partial"     // a saved state to resume (interrupted, or fewer epochs)
	New         Status = "new"         // nothing saved yet
	Failed      Status = "failed"      // its train process failed in this sweep
	Interrupted Status = "interrupted" // stopped by the sweep's interruption (resumable)
)

// State reads a point's run folder: Finished when its metrics log holds the configured number of
// epochs, Partial when it has a state.pt to resume, else New.
func (p *Plan) State(pt Point) Status {
	dir := p.RunDir(pt)
	if logs, err := readLog(filepath.Join(dir, trainer.LogFile)); err == nil && len(logs) > 0 && logs[len(logs)-1].Epoch >= pt.Config.Epochs {
		return Finished
	}
	if _, err := os.Stat(filepath.Join(dir, trainer.StateFile)); err == nil {
		return Partial
	}
	return New
}

// readLog reads a metrics.jsonl.
func readLog(path string) ([]trainer.EpochLog, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []trainer.EpochLog
	for i, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var l trainer.EpochLog
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("%s line %d: %v", path, i+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// RunOptions say how Run executes the points.
type RunOptions struct {
	Bin string // the affgd binary (the running one: os.Executable)
	// Slots are the concurrent runs: each runs one point at a time on its device ("" = the
	// config's device). len(Slots) points run at once.
	Slots    []string
	Progress func(line string) // one line per point as it finishes (or is skipped)
}

// Outcome is what happened to one point in Run.
type Outcome struct {
	Point   Point
	Status  Status
	Seconds float64
	Detail  string // failure: the error's last line and where the log is
}

// Run runs every point that is not finished yet as its own train process (resumed when it has
// a saved state), len(opt.Slots) at a time, each writing its output to runDir/train.log. A
// failed point is reported and the others go on. When ctx ends, the running processes get
// SIGINT (they save their state and stop after the step in progress), no new point starts, and
// the unfinished points are Interrupted. Run returns every point's outcome in grid order.
func Run(ctx context.Context, p *Plan, opt RunOptions) []Outcome {
	slots := opt.Slots
	if len(slots) == 0 {
		slots = []string{""}
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(string) {}
	}
	out := make([]Outcome, len(p.Points))
	jobs := make(chan int)
	var mu sync.Mutex
	done := 0
	report := func(i int) {
		mu.Lock()
		defer mu.Unlock()
		done++
		progress(fmt.Sprintf("[%d/%d] %s: %s", done, len(out), out[i].Point.Label(p.Axes), describe(p, out[i])))
	}
	var wg sync.WaitGroup
	for _, dev := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				out[i] = p.runPoint(ctx, opt.Bin, p.Points[i], dev)
				report(i)
			}
		}()
	}
	for i, pt := range p.Points {
		if p.State(pt) == Finished {
			out[i] = Outcome{Point: pt, Status: Finished, Detail: "finished already (skipped)"}
			report(i)
			continue
		}
		if ctx.Err() != nil {
			out[i] = Outcome{Point: pt, Status: Interrupted, Detail: "not started"}
			continue
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			out[i] = Outcome{Point: pt, Status: Interrupted, Detail: "not started"}
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

// runPoint runs one point's train process on device (or the config's).
func (p *Plan) runPoint(ctx context.Context, bin string, pt Point, device string) (o Outcome) {
	o.Point = pt
	start := time.Now()
	defer func() { o.Seconds = time.Since(start).Seconds() }()
	fail := func(err error) Outcome {
		o.Status, o.Detail = Failed, err.Error()
		return o
	}
	if device == "" {
		device = pt.Config.Device
	}
	if err := p.writeConfig(pt, device); err != nil {
		return fail(err)
	}
	dir := p.RunDir(pt)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	logPath := filepath.Join(dir, LogName)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	args := p.Command(bin, pt)
	resumed := p.State(pt) == Partial
	if resumed {
		args = append(args, "--resume")
	}
	fmt.Fprintf(logf, "== %s %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches the sweep only, which forwards one
	// SIGINT (a second one would make train stop without saving).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting %s: %w", bin, err))
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = cmd.Process.Signal(os.Interrupt)
		err = <-waited
	}
	if err == nil {
		o.Status = Finished
		if resumed {
			o.Detail = "resumed and finished"
		}
		return o
	}
	var ee *exec.ExitError
	if ctx.Err() != nil || (errors.As(err, &ee) && ee.ExitCode() == 130) {
		o.Status, o.Detail = Interrupted, "interrupted, its state saved (rerun the sweep to resume it)"
		return o
	}
	o.Status, o.Detail = Failed, fmt.Sprintf("%v: %s (log: %s)", err, lastLine(logPath), logPath)
	return o
}

// lastLine is the last non-empty line of a file (the train process's error).
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	last := ""
	for sc.Scan() {
		for _, l := range strings.Split(sc.Text(), "\r") {
			if strings.TrimSpace(l) != "" {
				last = strings.TrimSpace(l)
			}
		}
	}
	return last
}

// describe is a point's progress text.
func describe(p *Plan, o Outcome) string {
	switch o.Status {
	case Finished:
		r := p.Collect()[o.Point.Index]
		s := fmt.Sprintf("finished in %.0fs", o.Seconds)
		if o.Detail != "" {
			s = o.Detail
			if o.Seconds > 0 {
				s += fmt.Sprintf(" in %.0fs", o.Seconds)
			}
		}
		if f, ok := r.Best["ree"]; ok {
			s += fmt.Sprintf("; best ree KLD %.4f (epoch %d), last %.4f", f.KLD, r.BestEpoch, r.Last["ree"].KLD)
		}
		return s
	case Failed:
		return "FAILED: " + o.Detail
	default:
		return string(o.Status) + ": " + o.Detail
	}
}
