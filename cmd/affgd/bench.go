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

	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
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
		}},
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
	threads := c.Int("threads")
	if err := torch.SetNumThreads(threads); err != nil {
		return err
	}
	py := c.String("python")
	if py == "" {
		return fmt.Errorf("bench: no python for the PyTorch side: pass --python or set AFFGD_PYTHON (make bench does)")
	}
	scale := c.Float64("scale")
	dev, err := torch.ParseDevice(c.String("device"))
	if err != nil {
		return err
	}
	if err := torch.CheckDevice(dev); err != nil {
		return err
	}
	n := func(k int) int { return max(1, int(float64(k)*scale)) }
	goTimes := map[string]float64{}
	err = torch.WithScope(func(s *torch.Scope) {
		torch.NoGrad(func() {
			g, err := torch.NewGenerator(0, torch.CPU)
			if err != nil {
				torch.Fail("bench", "%v", err)
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
	cmd := exec.Command(py, script, "--threads", fmt.Sprint(threads), "--scale", fmt.Sprint(scale), "--device", dev.String())
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("bench: running the PyTorch side (%s %s): %v", py, script, err)
	}
	pyTimes := map[string]float64{}
	if err := json.Unmarshal(outb, &pyTimes); err != nil {
		return fmt.Errorf("bench: reading the PyTorch side's output: %v", err)
	}
	fmt.Printf("libtorch %s, device %s, %d thread(s), %s/%s, %d CPU(s)\n", torch.Version(), dev, threads, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Printf("%-14s %14s %14s %12s\n", "op", "Go", "PyTorch", "Go/PyTorch")
	for _, k := range []string{"add_1elem", "matmul_384", "conv2d_head", "linear_fc1"} {
		fmt.Printf("%-14s %14s %14s %12.3f\n", k, dur(goTimes[k]), dur(pyTimes[k]), goTimes[k]/pyTimes[k])
	}
	return nil
}

func dur(s float64) string { return time.Duration(s * float64(time.Second)).String() }

func benchBackbones(c *cli.Context) error {
	threads := c.Int("threads")
	if err := torch.SetNumThreads(threads); err != nil {
		return err
	}
	py := c.String("python")
	if py == "" {
		return fmt.Errorf("bench: no python for the PyTorch side: pass --python or set AFFGD_PYTHON (make bench does)")
	}
	dev, err := torch.ParseDevice(c.String("device"))
	if err != nil {
		return err
	}
	if err := torch.CheckDevice(dev); err != nil {
		return err
	}
	torch.SetAllowTF32(false, false)
	batch, iters := int64(c.Int("batch")), c.Int("iters")
	goTimes := map[string]float64{}
	err = torch.WithScope(func(s *torch.Scope) {
		g, err := torch.NewGenerator(0, torch.CPU)
		if err != nil {
			torch.Fail("bench", "%v", err)
		}
		// DINO is built on the device (its initialisation draws from a generator there); the
		// weights' values do not change the time.
		gd, err := torch.NewGenerator(0, dev)
		if err != nil {
			torch.Fail("bench", "%v", err)
		}
		vit, err := dino.New(dino.ViTS16(), gd, dev)
		if err != nil {
			torch.Fail("bench", "%v", err)
		}
		defer vit.Free()
		cm, err := clip.New(clip.ViTB16(), g)
		if err != nil {
			torch.Fail("bench", "%v", err)
		}
		defer cm.Free()
		if err := cm.To(dev); err != nil {
			torch.Fail("bench", "%v", err)
		}
		x := torch.Randn([]int64{batch, 3, 224, 224}, g).To(dev)
		median := func(fn func() error) float64 {
			if err := fn(); err != nil { // warm-up
				torch.Fail("bench", "%v", err)
			}
			var ts []float64
			for i := 0; i < iters; i++ {
				torch.Synchronize(dev)
				t0 := time.Now()
				if err := fn(); err != nil {
					torch.Fail("bench", "%v", err)
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
	cmd := exec.Command(py, script, "--threads", fmt.Sprint(threads), "--batch", fmt.Sprint(batch),
		"--iters", fmt.Sprint(iters), "--device", dev.String())
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("bench: running the PyTorch side (%s %s): %v", py, script, err)
	}
	pyTimes := map[string]float64{}
	if err := json.Unmarshal(outb, &pyTimes); err != nil {
		return fmt.Errorf("bench: reading the PyTorch side's output: %v", err)
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
