package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "time affgd against the PyTorch reference in the same command, as ratios",
		Subcommands: []*cli.Command{{
			Name:  "ops",
			Usage: "per-op overhead (a 1-element add), a 384×384 matmul, the head's conv2d and linear",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "intra-op threads, for both sides"},
				&cli.StringFlag{Name: "python", EnvVars: []string{"AFFGD_PYTHON"}, Usage: "the venv's python, for the PyTorch side"},
				&cli.Float64Flag{Name: "scale", Value: 1, Usage: "multiplies the iteration counts"},
				&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"},
			},
			Action: benchOps,
		}, {
			Name:  "backbones",
			Usage: "full-size DINO ViT-S/16 and ClearCLIP ViT-B/16 forward on one step's batch of images, vs the released code's eager PyTorch",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "intra-op threads, for both sides"},
				&cli.StringFlag{Name: "python", EnvVars: []string{"AFFGD_PYTHON"}, Usage: "the venv's python, for the PyTorch side"},
				&cli.IntFlag{Name: "batch", Value: 32, Usage: "images per forward (one training step: B·(E+1) = 32)"},
				&cli.IntFlag{Name: "iters", Value: 3, Usage: "timed forwards per side (median reported)"},
				&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"},
			},
			Action: benchBackbones,
		}, {
			Name: "step",
			Usage: "one full training step (full-size backbones, a fresh Seen head: forward, backward, SGD step) vs the " +
				"PyTorch reference of the released step, split into the backbones and the rest",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "intra-op threads, for both sides"},
				&cli.StringFlag{Name: "python", EnvVars: []string{"AFFGD_PYTHON"}, Usage: "the venv's python, for the PyTorch side"},
				&cli.IntFlag{Name: "batch", Value: 8, Usage: "ego images per step (B)"},
				&cli.IntFlag{Name: "exo", Value: 3, Usage: "exo images per ego image (E)"},
				&cli.IntFlag{Name: "size", Value: 224, Usage: "image side in pixels (a multiple of 16)"},
				&cli.IntFlag{Name: "epoch", Value: 1, Usage: "0-based epoch (gating and the masks' CAM weighting start at 1)"},
				&cli.IntFlag{Name: "iters", Value: 2, Usage: "timed steps per side, after one warm-up (median reported)"},
				&cli.StringFlag{Name: "vocab", Usage: "CLIP's bpe_simple_vocab_16e6.txt.gz (default: $AFFGD_BPE_VOCAB, else tests/testdata/tokenizer's)"},
				&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N (our reference, --against ours, runs on the CPU only)"},
				&cli.BoolFlag{Name: "cache-text", Usage: "affgd side: each prompt's text features from the per-prompt cache (affgd train's default, config key cache_text)"},
				&cli.BoolFlag{Name: "deterministic", Usage: "affgd side: libtorch's deterministic algorithms and cuDNN's deterministic mode (config key deterministic), to measure their cost"},
				&cli.StringFlag{Name: "against", Value: "ours", Usage: "the PyTorch side: ours (tests/bench/bench_step.py, our reference of the released step) or released (the authors' code from --ref, tests/bench/released_step.py)"},
				&cli.StringFlag{Name: "ref", EnvVars: []string{"AFFGD_RELEASED_REF"}, Usage: "with --against released: a checkout of hynnsk/SelectiveCL (outside this repository)"},
				countFlag("step"),
				backboneDTypeFlag(),
			},
			Action: benchStep,
		}, benchDataCommand(), benchEvalCommand(), benchPrecisionCommand()},
	}
}

// timeit returns the median seconds per call of fn over 5 rounds of iters calls, after a warm-up;
// each round ends by waiting for the device.
func timeit(dev torch.Device, iters int, fn func()) float64 {
	for i := 0; i < max(1, iters/10); i++ {
		fn()
	}
	var rounds []float64
	for r := 0; r < 5; r++ {
		torch.Synchronize(dev)
		t0 := time.Now()
		for i := 0; i < iters; i++ {
			fn()
		}
		torch.Synchronize(dev)
		rounds = append(rounds, time.Since(t0).Seconds()/float64(iters))
	}
	sort.Float64s(rounds)
	return rounds[len(rounds)/2]
}

func benchOps(c *cli.Context) error {
	threads, py, dev, err := benchSetup(c)
	if err != nil {
		return err
	}
	scale := c.Float64("scale")
	n := func(k int) int { return max(1, int(float64(k)*scale)) }
	goTimes := map[string]float64{}
	err = torch.WithScope(func(s *torch.Scope) {
		torch.NoGrad(func() {
			g, err := torch.NewGenerator(0, torch.CPU)
			if err != nil {
				torch.Raise(err)
			}
			a, b := torch.Randn([]int64{1}, g).To(dev), torch.Randn([]int64{1}, g).To(dev)
			m1, m2 := torch.Randn([]int64{384, 384}, g).To(dev), torch.Randn([]int64{384, 384}, g).To(dev)
			x := torch.Randn([]int64{8, 384, 14, 14}, g).To(dev)
			w := torch.Randn([]int64{384, 384, 3, 3}, g).To(dev)
			bias := torch.Randn([]int64{384}, g).To(dev)
			tok := torch.Randn([]int64{8 * 196, 384}, g).To(dev)
			fc, fcb := torch.Randn([]int64{1536, 384}, g).To(dev), torch.Randn([]int64{1536}, g).To(dev)
			// Each timed call frees its result, as Python's refcounting does.
			goTimes["add_1elem"] = timeit(dev, n(20000), func() { a.Add(b).Free() })
			goTimes["matmul_384"] = timeit(dev, n(200), func() { m1.Matmul(m2).Free() })
			pad := torch.Conv2dOptions{Padding: [2]int64{1, 1}}
			goTimes["conv2d_head"] = timeit(dev, n(5), func() { torch.Conv2d(x, w, bias, pad).Free() })
			goTimes["linear_fc1"] = timeit(dev, n(10), func() { torch.Linear(tok, fc, fcb).Free() })
		})
	})
	if err != nil {
		return err
	}
	script := filepath.Join("tests", "bench", "bench_ops.py")
	pyTimes, err := runPython(py, script, "--threads", fmt.Sprint(threads), "--scale", fmt.Sprint(scale), "--device", dev.String())
	if err != nil {
		return err
	}
	fmt.Printf("libtorch %s, device %s, %d thread(s), %s/%s, %d CPU(s)\n", torch.Version(), dev, threads, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("%-14s %14s %14s %12s\n", "op", "Go", "PyTorch", "Go/PyTorch")
	for _, k := range []string{"add_1elem", "matmul_384", "conv2d_head", "linear_fc1"} {
		fmt.Printf("%-14s %14s %14s %12.3f\n", k, dur(goTimes[k]), dur(pyTimes[k]), goTimes[k]/pyTimes[k])
	}
	return nil
}

// benchSetup reads the flags every bench command shares: it sets the thread count and returns it,
// the PyTorch side's interpreter and the device (checked to exist).
func benchSetup(c *cli.Context) (threads int, py string, dev torch.Device, err error) {
	threads = c.Int("threads")
	if err = checkFlag(c, "threads", "threads"); err != nil {
		return
	}
	if err = torch.SetNumThreads(threads); err != nil {
		return
	}
	if py = c.String("python"); py == "" {
		err = fmt.Errorf("bench: no python for the PyTorch side: pass --python or set AFFGD_PYTHON (make bench does)")
		return
	}
	if dev, err = torch.ParseDevice(c.String("device")); err != nil {
		return
	}
	err = torch.CheckDevice(dev)
	return
}

// runPython runs the PyTorch side of a benchmark, a script under tests/bench printing one JSON
// object of seconds by name, and returns that object.
func runPython(py, script string, args ...string) (map[string]float64, error) {
	cmd := exec.Command(py, append([]string{script}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench: running the PyTorch side (%s %s): %v", py, script, err)
	}
	times := map[string]float64{}
	if err := json.Unmarshal(out, &times); err != nil {
		return nil, fmt.Errorf("bench: reading the PyTorch side's output: %v", err)
	}
	return times, nil
}

func dur(s float64) string { return time.Duration(s * float64(time.Second)).String() }

func benchBackbones(c *cli.Context) error {
	threads, py, dev, err := benchSetup(c)
	if err != nil {
		return err
	}
	torch.SetAllowTF32(false, false)
	batch, iters := int64(c.Int("batch")), c.Int("iters")
	goTimes := map[string]float64{}
	err = torch.WithScope(func(s *torch.Scope) {
		g, err := torch.NewGenerator(0, torch.CPU)
		if err != nil {
			torch.Raise(err)
		}
		// DINO is built on the device (its initialisation draws from a generator there); the
		// weights' values do not change the time.
		gd, err := torch.NewGenerator(0, dev)
		if err != nil {
			torch.Raise(err)
		}
		vit, err := dino.New(dino.ViTS16(), gd, dev)
		if err != nil {
			torch.Raise(err)
		}
		defer vit.Free()
		cm, err := clip.New(clip.ViTB16(), g)
		if err != nil {
			torch.Raise(err)
		}
		defer cm.Free()
		if err := cm.To(dev); err != nil {
			torch.Raise(err)
		}
		x := torch.Randn([]int64{batch, 3, 224, 224}, g).To(dev)
		median := func(fn func() error) float64 {
			if err := fn(); err != nil { // warm-up
				torch.Raise(err)
			}
			var ts []float64
			for i := 0; i < iters; i++ {
				torch.Synchronize(dev)
				t0 := time.Now()
				if err := fn(); err != nil {
					torch.Raise(err)
				}
				torch.Synchronize(dev)
				ts = append(ts, time.Since(t0).Seconds())
			}
			sort.Float64s(ts)
			return ts[len(ts)/2]
		}
		goTimes["dino"] = median(func() error {
			o, err := vit.Features(x)
			if err == nil {
				o.Key.Free()
				o.Attn.Free()
				o.SamHard.Free()
			}
			return err
		})
		goTimes["clip"] = median(func() error {
			f, err := cm.DenseFeatures(x)
			f.Free()
			return err
		})
	})
	if err != nil {
		return err
	}
	script := filepath.Join("tests", "bench", "bench_backbones.py")
	pyTimes, err := runPython(py, script, "--threads", fmt.Sprint(threads), "--batch", fmt.Sprint(batch),
		"--iters", fmt.Sprint(iters), "--device", dev.String())
	if err != nil {
		return err
	}
	goTimes["total"] = goTimes["dino"] + goTimes["clip"]
	pyTimes["total"] = pyTimes["dino"] + pyTimes["clip"]
	fmt.Printf("libtorch %s, device %s, %d thread(s), batch %d at 224×224, TF32 off, median of %d\n", torch.Version(), dev, threads, batch, iters)
	fmt.Printf("%-22s %12s %12s %12s\n", "backbone", "Go", "PyTorch", "Go/PyTorch")
	for _, k := range []string{"dino", "clip", "total"} {
		name := map[string]string{"dino": "DINO ViT-S/16", "clip": "ClearCLIP ViT-B/16", "total": "both"}[k]
		fmt.Printf("%-22s %12s %12s %12.3f\n", name, dur(goTimes[k]), dur(pyTimes[k]), goTimes[k]/pyTimes[k])
	}
	return nil
}

// benchStep times one training step on each side: total (forward, zero_grad, backward, SGD step)
// and the backbone calls alone on the same batch, run in pairs; "rest" (head, part discovery,
// losses, backward, optimizer) is the median of the pairs' differences.
func benchStep(c *cli.Context) error {
	threads, py, dev, err := benchSetup(c)
	if err != nil {
		return err
	}
	against, ref := c.String("against"), c.String("ref")
	switch {
	case against != "ours" && against != "released":
		return fmt.Errorf("bench step: --against %q: want ours or released", against)
	case against == "released" && ref == "":
		return fmt.Errorf("bench step: --against released needs --ref, a checkout of hynnsk/SelectiveCL (e.g. git -C MIRROR archive HEAD | tar -x -C /tmp/selcl)")
	case against == "ours" && !dev.IsCPU():
		return fmt.Errorf("bench step: our reference step (tests/method/ref_step.py) runs on the CPU only; on %s use --against released --ref CHECKOUT", dev)
	}
	if against == "released" {
		if _, err := os.Stat(filepath.Join(ref, "models", "locate.py")); err != nil {
			return fmt.Errorf("bench step: --ref %s is not a SelectiveCL checkout (no models/locate.py)", ref)
		}
	}
	bsz, e, size := int64(c.Int("batch")), int64(c.Int("exo")), int64(c.Int("size"))
	iters, epoch := max(1, c.Int("iters")), c.Int("epoch")
	for _, f := range []struct{ flag, key string }{{"batch", "batch_size"}, {"exo", "num_exo"}, {"size", "crop_size"}} {
		if err := checkFlag(c, f.flag, f.key); err != nil {
			return fmt.Errorf("bench step: %w", err)
		}
	}
	if size%16 != 0 {
		return fmt.Errorf("bench step: --size %d: want a multiple of the patch size 16", size)
	}
	if against == "released" && (size != 224 || epoch < 1) {
		return fmt.Errorf("bench step: the released code runs at --size 224 only (its reshape is hard-coded) and is timed at --epoch ≥ 1")
	}
	vocab := c.String("vocab") // the Python side reads the same file
	if vocab == "" {
		vocab = tokenizer.DefaultVocabPath()
	}
	if vocab == "" {
		vocab = filepath.Join("tests", "testdata", "tokenizer", tokenizer.VocabFileName)
	}
	tok, err := tokenizer.Load(vocab)
	if err != nil {
		return err
	}
	classes := data.Seen.Classes()
	torch.SetAllowTF32(false, false) // parity settings on both sides (released_step.py too)
	if c.Bool("deterministic") {
		if os.Getenv(torch.DeterministicEnv) == "" {
			os.Setenv(torch.DeterministicEnv, torch.DeterministicEnvValue)
		}
		torch.SetDeterministic(true)
	}
	var goMem memFigures
	res, err := train.BenchStep(train.BenchStepOptions{
		Batch: bsz, Exo: e, Size: size, Epoch: epoch, Iters: iters, Device: dev, Tok: tok, Classes: classes,
		CacheText: c.Bool("cache-text"), BackboneDType: c.String("backbone-dtype"),
		OnTimed: func() { goMem.reset(dev) },
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	goMem.read(dev)
	goTimes := map[string]float64{"step": medianOf(res.Steps), "backbones": medianOf(res.Backbones), "rest": medianOf(res.Rests)}
	counts := res.Counts
	if against == "released" {
		return benchStepReleased(c, py, ref, dev, threads, bsz, e, epoch, iters, len(classes), goTimes, goMem)
	}
	script := filepath.Join("tests", "bench", "bench_step.py")
	pyTimes, err := runPython(py, script, "--threads", fmt.Sprint(threads), "--batch", fmt.Sprint(bsz), "--exo", fmt.Sprint(e),
		"--size", fmt.Sprint(size), "--epoch", fmt.Sprint(epoch), "--iters", fmt.Sprint(iters), "--vocab", vocab,
		"--divide", string(data.Seen), "--device", dev.String())
	if err != nil {
		return err
	}
	fmt.Printf("libtorch %s, device %s, %d thread(s), B=%d E=%d at %d×%d, epoch %d, Seen head (%d classes), median of %d, deterministic %v, affgd backbones in %s\n",
		torch.Version(), dev, threads, bsz, e, size, size, epoch, len(classes), iters, torch.Deterministic(), c.String("backbone-dtype"))
	fmt.Printf("%-36s %12s %12s %12s %12s\n", "part", "Go", "PyTorch", "Go/PyTorch", "speed-up")
	for _, k := range []string{"backbones", "rest", "step"} {
		name := map[string]string{
			"backbones": "backbones (CLIP text+dense, DINO)",
			"rest":      "rest (head, discovery, losses, backward, SGD)",
			"step":      "whole step",
		}[k]
		r := func(t float64) string {
			return time.Duration(t * float64(time.Second)).Round(time.Millisecond).String()
		}
		fmt.Printf("%-36s %12s %12s %12.3f %11.2f×\n", name, r(goTimes[k]), r(pyTimes[k]), goTimes[k]/pyTimes[k], pyTimes[k]/goTimes[k])
	}
	fmt.Printf("%-36s %12s\n", "peak memory (affgd)", goMem)
	if c.Bool("count") {
		printCounts("per step (affgd side: backbones, head, discovery, losses, backward, SGD)", counts, 1)
		printCounts("of which the backbones (CLIP text+dense, DINO)", res.BackboneCounts, 1)
	}
	return nil
}

// backboneDTypeFlag is --backbone-dtype of the bench commands (the affgd side only).
func backboneDTypeFlag() cli.Flag {
	return &cli.StringFlag{Name: "backbone-dtype", Value: "float32", Usage: "affgd side: dtype of the image backbones (float32, bf16, fp16; not parity)"}
}

// countFlag is --count of the bench commands that report the shim's counters.
func countFlag(per string) cli.Flag {
	return &cli.BoolFlag{Name: "count", Usage: "also print the shim's counters per " + per +
		" (shim calls, ops launched, device→host reads, blocking host→device copies; torch.Counters)"}
}

// printCounts prints the shim's counters of each measured run divided by per (images in a run;
// 1 for steps): the range over the runs, or one figure when they agree.
func printCounts(what string, runs []torch.Counters, per int) {
	if len(runs) == 0 {
		return
	}
	fmt.Printf("shim counters %s:\n", what)
	names := []string{"shim calls", "ops launched", "device→host reads", "host→device copies"}
	for j, name := range names {
		lo, hi := runs[0].Per(per)[j], runs[0].Per(per)[j]
		for _, r := range runs[1:] {
			v := r.Per(per)[j]
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo == hi {
			fmt.Printf("  %-20s %10.1f\n", name, lo)
		} else {
			fmt.Printf("  %-20s %10.1f – %.1f\n", name, lo, hi)
		}
	}
}

// medianOf returns the middle value of xs (the upper one of an even count), as the other benches.
func medianOf(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
