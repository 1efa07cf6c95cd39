package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/affgd/affgd/report"
)

// TestSweepAndAnalyze runs `affgd sweep` and `affgd analyze` on the small synthetic set with
// tiny settings (2 epochs of 2 steps, 2 test images per evaluation).
func TestSweepAndAnalyze(t *testing.T) {
	start := time.Now()
	c := setup(t)
	base := filepath.Join(c.dir, "base.yaml")
	yml := fmt.Sprintf("data_root: %s\ndino: %s\nclip: %s\nvocab: %s\nresize_size: 72\ncrop_size: 64\nbatch_size: 2\n"+
		"workers: 1\nthreads: 1\nepochs: 2\nmax_steps_per_epoch: 2\ntest_limit: 2\n", c.root, c.dino, c.clip, c.voc)
	if err := os.WriteFile(base, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	grid := []string{"--config", base, "--set", "alpha=0.5,0.7", "--set", "kmeans_k=2,3"}
	ref := filepath.Join(c.dir, "sweep-a")
	t.Run("2x2 sweep", func(t *testing.T) { c.testSweep(t, grid, ref) })
	t.Run("interrupted sweep", func(t *testing.T) { c.testSweepInterrupted(t, grid, ref) })
	t.Run("print-slurm", func(t *testing.T) { c.testSlurm(t, grid, ref) })
	t.Run("failed point", func(t *testing.T) { c.testSweepFailure(t, base) })
	t.Run("sweep errors", func(t *testing.T) { c.testSweepErrors(t, base, grid, ref) })
	t.Run("analyze", c.testAnalyze)
	t.Logf("TestSweepAndAnalyze: %.1fs", time.Since(start).Seconds())
}

var sweepPoints = []struct{ name, alpha, k string }{
	{"alpha=0.5,kmeans_k=2", "0.5", "2"}, {"alpha=0.5,kmeans_k=3", "0.5", "3"},
	{"alpha=0.7,kmeans_k=2", "0.7", "2"}, {"alpha=0.7,kmeans_k=3", "0.7", "3"},
}

// testSweep runs the 2×2 grid: sweep.csv holds exactly what each run's metrics.jsonl says, the
// runs have the points' settings, and a rerun skips every point.
func (c *cliEnv) testSweep(t *testing.T, grid []string, out string) {
	r := c.mustRun(t, append(append([]string{"sweep"}, grid...), "--parallel", "2", "--out", out)...)
	for i, p := range sweepPoints {
		label := fmt.Sprintf("alpha=%s kmeans_k=%s: finished", p.alpha, p.k)
		if !strings.Contains(r.stdout, label) {
			t.Errorf("no progress line for point %d (%q):\n%s", i, label, r.stdout)
		}
		var cfg struct {
			Alpha   float64 `yaml:"alpha"`
			KMeansK int     `yaml:"kmeans_k"`
		}
		readYAML(t, filepath.Join(out, "runs", p.name, "config.yaml"), &cfg)
		if strconv.FormatFloat(cfg.Alpha, 'g', -1, 64) != p.alpha || strconv.Itoa(cfg.KMeansK) != p.k {
			t.Errorf("%s trained with alpha %v, kmeans_k %v", p.name, cfg.Alpha, cfg.KMeansK)
		}
	}
	rows := readCSV(t, filepath.Join(out, "sweep.csv"))
	if len(rows) != len(sweepPoints) {
		t.Fatalf("sweep.csv: %d rows, want %d", len(rows), len(sweepPoints))
	}
	for i, p := range sweepPoints {
		row := rows[i]
		if row["point"] != p.name || row["alpha"] != p.alpha || row["kmeans_k"] != p.k || row["status"] != "finished" || row["epochs"] != "2" {
			t.Errorf("row %d: %v", i, row)
		}
		logs := readMetrics(t, filepath.Join(out, "runs", p.name, "metrics.jsonl"))
		last, best := logs[len(logs)-1], 0
		for j, l := range logs {
			if l.Best {
				best = j
			}
		}
		if row["best_epoch"] != strconv.Itoa(logs[best].Epoch) {
			t.Errorf("%s: best_epoch %s, the log's best is epoch %d", p.name, row["best_epoch"], logs[best].Epoch)
		}
		for _, which := range []struct {
			name string
			f    map[string]report.Figures
		}{{"best", logs[best].Eval.Overall}, {"last", last.Eval.Overall}} {
			for _, mp := range []string{"cam", "ree", "rem"} {
				for m, v := range map[string]float64{"kld": which.f[mp].KLD, "sim": which.f[mp].SIM, "nss": which.f[mp].NSS} {
					col := which.name + "_" + mp + "_" + m
					got, err := strconv.ParseFloat(row[col], 64)
					if err != nil || got != v {
						t.Errorf("%s %s: sweep.csv %q, metrics.jsonl %v", p.name, col, row[col], v)
					}
				}
			}
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "sweep.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Best epoch", "## Last epoch", "| 0.7 | 3 | finished |", "ree KLD"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("sweep.md lacks %q", want)
		}
	}
	checkPNG(t, filepath.Join(out, "sweep.png"))
	before, _ := os.ReadFile(filepath.Join(out, "sweep.csv"))
	r = c.mustRun(t, append(append([]string{"sweep"}, grid...), "--out", out)...)
	if n := strings.Count(r.stdout, "finished already (skipped)"); n != len(sweepPoints) {
		t.Errorf("rerun: %d points skipped, want all %d:\n%s", n, len(sweepPoints), r.stdout)
	}
	if after, _ := os.ReadFile(filepath.Join(out, "sweep.csv")); !bytes.Equal(before, after) {
		t.Error("rerun changed sweep.csv")
	}
	// --collect only tabulates (what a Slurm array's results need).
	os.Remove(filepath.Join(out, "sweep.csv"))
	r = c.mustRun(t, append(append([]string{"sweep"}, grid...), "--out", out, "--collect")...)
	if after, _ := os.ReadFile(filepath.Join(out, "sweep.csv")); !bytes.Equal(before, after) || strings.Contains(r.stdout, "[1/4]") {
		t.Errorf("--collect: sweep.csv differs or points ran:\n%s", r.stdout)
	}
}

// testSweepInterrupted interrupts a sweep (SIGINT) while its second point trains, reruns it, and
// compares its sweep.csv with the uninterrupted sweep's.
func (c *cliEnv) testSweepInterrupted(t *testing.T, grid []string, ref string) {
	out := filepath.Join(c.dir, "sweep-b")
	args := append(append([]string{"sweep"}, grid...), "--out", out)
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "[1/4]") {
			break
		}
	}
	// Wait until point 2 has taken a step, then interrupt the sweep.
	log2 := filepath.Join(out, "runs", sweepPoints[1].name, "train.log")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(log2); bytes.Contains(b, []byte("epoch 1 step 1/")) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted sweep: %v, want exit 130\n%s\n%s", err, text.String(), stderr.String())
	}
	checkClean(t, args, stderr.String())
	if !strings.Contains(stderr.String(), "the same command continues") {
		t.Errorf("interrupted sweep: stderr does not say how to continue:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "runs", sweepPoints[1].name, "state.pt")); err != nil {
		t.Errorf("the interrupted point saved no state: %v", err)
	}
	r := c.mustRun(t, args...)
	if !strings.Contains(r.stdout, "alpha=0.5 kmeans_k=2: finished already (skipped)") || !strings.Contains(r.stdout, "alpha=0.5 kmeans_k=3: resumed and finished") {
		t.Errorf("rerun: point 1 not skipped or point 2 not resumed:\n%s", r.stdout)
	}
	a, _ := os.ReadFile(filepath.Join(ref, "sweep.csv"))
	b, _ := os.ReadFile(filepath.Join(out, "sweep.csv"))
	if !bytes.Equal(a, b) {
		t.Errorf("the resumed sweep's CSV differs from the uninterrupted one's:\n%s\n%s", a, b)
	}
}

// testSlurm checks the job-array script's per-point commands, and runs one task as Slurm would.
func (c *cliEnv) testSlurm(t *testing.T, grid []string, out string) {
	r := c.mustRun(t, append(append([]string{"sweep"}, grid...), "--out", out, "--print-slurm")...)
	for _, want := range []string{"#!/bin/bash\n", "#SBATCH --array=0-3\n", `case "$SLURM_ARRAY_TASK_ID" in`,
		"if [ -f \"$run/state.pt\" ]; then cmd+=(--resume); fi\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("slurm script lacks %q:\n%s", want, r.stdout)
		}
	}
	for i, p := range sweepPoints {
		line := fmt.Sprintf("  %d) run=%s; cmd=(%s train --config %s) ;;\n", i,
			filepath.Join(out, "runs", p.name), c.bin, filepath.Join(out, "configs", p.name+".yaml"))
		if !strings.Contains(r.stdout, line) {
			t.Errorf("slurm script lacks task %d's command %q:\n%s", i, line, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "--gres=gpu") {
		t.Error("a GPU requested for a CPU config")
	}
	script := filepath.Join(c.dir, "sweep.slurm")
	if err := os.WriteFile(script, []byte(r.stdout), 0o755); err != nil {
		t.Fatal(err)
	}
	// Task 1 of the finished grid: resumes a finished run, which has nothing left to do.
	sh := exec.Command("bash", script)
	sh.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID=1")
	if b, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("array task 1: %v\n%s", err, b)
	}
	logb, _ := os.ReadFile(filepath.Join(out, "runs", sweepPoints[1].name, "train.log"))
	if !strings.Contains(string(logb), "resuming at epoch 3") {
		t.Errorf("array task 1 did not resume its finished run:\n%s", tail(string(logb)))
	}
	sh = exec.Command("bash", script)
	sh.Env = append(os.Environ(), "SLURM_ARRAY_TASK_ID=4")
	if b, err := sh.CombinedOutput(); err == nil || !strings.Contains(string(b), "no point 4") {
		t.Errorf("array task 4 of 4 points: %v\n%s", err, b)
	}
}

// testSweepFailure: a point that fails is reported, and the others finish.
func (c *cliEnv) testSweepFailure(t *testing.T, base string) {
	out := filepath.Join(c.dir, "sweep-c")
	missing := filepath.Join(c.dir, "missing-dino.pth")
	r := c.run(t, "sweep", "--config", base, "--set", "dino="+missing+","+c.dino, "--devices", "cpu,cpu", "--out", out)
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 2 points failed") || !strings.Contains(r.stderr, "dino="+missing) {
		t.Fatalf("exit %d, want 1 naming the failed point:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "missing-dino.pth") {
		t.Errorf("no progress line for the failure:\n%s", r.stdout)
	}
	rows := readCSV(t, filepath.Join(out, "sweep.csv"))
	if len(rows) != 2 || rows[0]["status"] != "new" || rows[1]["status"] != "finished" {
		t.Errorf("sweep.csv statuses: %v", rows)
	}
}

// testSweepErrors: bad --set keys and values, bad configs, and a folder of another grid.
func (c *cliEnv) testSweepErrors(t *testing.T, base string, grid []string, ref string) {
	bad := filepath.Join(c.dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kmeans: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(c.dir, "sweep-err")
	otherBase := filepath.Join(c.dir, "base-lr.yaml")
	b, _ := os.ReadFile(base)
	if err := os.WriteFile(otherBase, append(b, []byte("lr: 0.01\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown key", []string{"--config", base, "--set", "alfa=0.4", "--out", out}, []string{"unknown key \"alfa\"", "valid keys: data_root", "kmeans_k", "loss_weights.pixel"}},
		{"unknown value", []string{"--config", base, "--set", "prototypes=selective,parts", "--out", out}, []string{"prototypes=parts", `"selective", "object" or "part"`}},
		{"kmeans_k 0", []string{"--config", base, "--set", "kmeans_k=0,2", "--out", out}, []string{"kmeans_k=0", "kmeans_k: 0 is out of range: want an integer in [1, 64]"}},
		{"negative weight", []string{"--config", base, "--set", "loss_weights.pixel=-1", "--out", out}, []string{"loss_weights.pixel = -1", "≥ 0"}},
		{"not a number", []string{"--config", base, "--set", "alpha=high", "--out", out}, []string{"alpha"}},
		{"no values", []string{"--config", base, "--set", "alpha", "--out", out}, []string{"KEY=VALUE"}},
		{"unknown config key", []string{"--config", bad, "--set", "alpha=0.5", "--out", out}, []string{"unknown key kmeans", "valid keys"}},
		{"both slots flags", []string{"--config", base, "--set", "alpha=0.5", "--out", out, "--devices", "cpu", "--parallel", "2"}, []string{"--devices and --parallel"}},
		{"other values", append(append([]string{}, "--config", base, "--set", "alpha=0.5,0.6", "--set", "kmeans_k=2,3"), "--out", ref), []string{"another grid", "--set alpha"}},
		{"other keys", []string{"--config", base, "--set", "alpha=0.5,0.7", "--set", "gamma1=0.5", "--out", ref}, []string{"another grid", "--set kmeans_k", "--set gamma1"}},
		{"other base", append(append([]string{"--config", otherBase}, grid[2:]...), "--out", ref), []string{"another grid", "differs in lr"}},
	} {
		r := c.run(t, append([]string{"sweep"}, tc.args...)...)
		if r.code == 0 {
			t.Errorf("%s: exit 0", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.name, w, r.stderr)
			}
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused sweep created its folder")
	}
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 1 {
		t.Fatalf("%s: %v", path, err)
	}
	var rows []map[string]string
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, h := range recs[0] {
			row[h] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}

type metricsLine struct {
	Epoch int             `json:"epoch"`
	Best  bool            `json:"best"`
	Eval  *report.Summary `json:"eval"`
}

func readMetrics(t *testing.T, path string) []metricsLine {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []metricsLine
	for _, l := range lines(string(raw)) {
		var m metricsLine
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.Eval == nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, format, err := image.DecodeConfig(f); err != nil || format != "png" {
		t.Errorf("%s: %q, %v", path, format, err)
	}
}

// testAnalyze runs analyze on the one-epoch checkpoint of the synthetic set (both splits) and
// checks its files and the consistency of its figures.
func (c *cliEnv) testAnalyze(t *testing.T) {
	out := filepath.Join(c.dir, "analysis")
	args := []string{"analyze", "--checkpoint", c.checkpointTrain1, "--vocab", c.voc, "--data-root", c.root,
		"--config", filepath.Join(c.run1, "config.yaml"), "--workers", "1", "--threads", "1", "--batch-size", "4"}
	c.mustRun(t, append(args, "--out", out)...)
	for _, f := range []string{"activation.png", "discovery.png", "clusters.png"} {
		checkPNG(t, filepath.Join(out, f))
	}
	var res struct {
		Samples int       `json:"samples"`
		Alpha   float64   `json:"alpha"`
		K       int       `json:"kmeans_k"`
		Alphas  []float64 `json:"alphas"`
		Overall struct {
			Ego, Exo  struct{ Maps int }
			Discovery struct {
				Samples    int       `json:"samples"`
				Candidates []int     `json:"candidates"`
				PartShare  []float64 `json:"part_share_by_alpha"`
			}
			Clusters []struct {
				K          int     `json:"k"`
				Samples    int     `json:"samples"`
				PartShare  float64 `json:"part_share"`
				EmptyShare float64 `json:"empty_share"`
			}
		}
		Classes []struct {
			Name string
			Ego  struct{ Maps int }
		}
	}
	raw, err := os.ReadFile(filepath.Join(out, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	o := res.Overall
	if res.Samples == 0 || o.Ego.Maps != res.Samples || o.Exo.Maps != 3*res.Samples || o.Discovery.Samples != res.Samples || len(o.Discovery.Candidates) != res.Samples {
		t.Errorf("analysis.json counts: samples %d, ego %d, exo %d, discovery %d", res.Samples, o.Ego.Maps, o.Exo.Maps, o.Discovery.Samples)
	}
	n := 0
	for _, cl := range res.Classes {
		n += cl.Ego.Maps
	}
	if n != res.Samples || len(res.Classes) != 2 {
		t.Errorf("per-class samples sum to %d over %d classes, want %d over 2", n, len(res.Classes), res.Samples)
	}
	var ks []int
	for _, k := range o.Clusters {
		ks = append(ks, k.K)
		if k.EmptyShare < 0 || k.EmptyShare > 1 || k.Samples != res.Samples {
			t.Errorf("K=%d: %+v", k.K, k)
		}
		if k.K == res.K {
			// The offline α sweep reproduces part discovery's own α decision at the run's α.
			for i, a := range res.Alphas {
				if a == res.Alpha && o.Discovery.PartShare[i] != k.PartShare {
					t.Errorf("part share at α=%g: offline %v, discovery's %v", a, o.Discovery.PartShare[i], k.PartShare)
				}
			}
		}
	}
	if fmt.Sprint(ks) != "[2 3 4 5]" {
		t.Errorf("K of (c): %v", ks)
	}
	md, _ := os.ReadFile(filepath.Join(out, "analysis.md"))
	for _, w := range []string{"## (a)", "## (b)", "## (c)", "| hold |", "| cut_with |", "ego above γ2"} {
		if !strings.Contains(string(md), w) {
			t.Errorf("analysis.md lacks %q", w)
		}
	}
	// The test split: (a) against the GT masks only.
	outTest := filepath.Join(c.dir, "analysis-test")
	c.mustRun(t, append(args, "--split", "test", "--out", outTest)...)
	checkPNG(t, filepath.Join(outTest, "activation.png"))
	if _, err := os.Stat(filepath.Join(outTest, "discovery.png")); err == nil {
		t.Error("the test split wrote discovery.png")
	}
	md, _ = os.ReadFile(filepath.Join(outTest, "analysis.md"))
	if !strings.Contains(string(md), "anchors on GT") || !strings.Contains(string(md), "--split train") {
		t.Errorf("test-split analysis.md:\n%s", md)
	}
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"bad split", []string{"--split", "val"}, "--split"},
		{"kmeans_k 0", []string{"--kmeans-k", "0"}, "kmeans_k"},
		{"alpha 2", []string{"--alpha", "2"}, "alpha"},
		{"missing data", []string{"--data-root", filepath.Join(c.dir, "nowhere")}, "nowhere"},
	} {
		r := c.run(t, append(append(append([]string{}, args...), "--out", filepath.Join(c.dir, "analysis-bad")), tc.extra...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want it to name %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
}
