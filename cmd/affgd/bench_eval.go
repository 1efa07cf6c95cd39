package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/synth"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

func benchEvalCommand() *cli.Command {
	return &cli.Command{
		Name: "eval",
		Usage: "affgd eval's images/s (decode, transform, inference, metrics of cam/ree/rem) vs the released evaluation " +
			"loop in PyTorch (PIL + torchvision + test_forward + cv2 metrics) on the same test set and checkpoint",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "intra-op threads, for both sides"},
			&cli.StringFlag{Name: "python", EnvVars: []string{"AFFGD_PYTHON"}, Usage: "the venv's python, for the PyTorch side"},
			&cli.StringFlag{Name: "data-root", Usage: "an AGD20K root (its Seen test set is read); default: the synthetic set of affgd synth"},
			&cli.StringFlag{Name: "checkpoint", Usage: "a released-format checkpoint; default: full-size random backbones (ViT-S/16, ViT-B/16) and a fresh head"},
			&cli.StringFlag{Name: "vocab", Usage: "CLIP's bpe_simple_vocab_16e6.txt.gz (default: the copy affgd synth places)"},
			&cli.IntFlag{Name: "limit", Usage: "the first N test images only (0 = all)"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N (our PyTorch evaluation loop, --against ours, runs on the CPU only)"},
			&cli.StringFlag{Name: "against", Value: "ours", Usage: "the PyTorch side: ours (tests/bench/bench_eval.py: the released evaluation loop with decoding and metrics) or released (the authors' test_forward per image from --ref, tests/bench/released_step.py)"},
			&cli.StringFlag{Name: "ref", EnvVars: []string{"AFFGD_RELEASED_REF"}, Usage: "with --against released: a checkout of hynnsk/SelectiveCL"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu only: the PyTorch side runs on the CPU"},
			countFlag("image"),
			backboneDTypeFlag(),
			&cli.IntFlag{Name: "batch-size", Usage: "affgd side: test images per forward (0 = the device's default; the released loop runs batch 1)"},
		},
		Action: benchEval,
	}
}

func benchEval(c *cli.Context) error {
	threads, py, dev, err := benchSetup(c)
	if err != nil {
		return err
	}
	against, ref := c.String("against"), c.String("ref")
	switch {
	case against != "ours" && against != "released":
		return fmt.Errorf("bench eval: --against %q: want ours or released", against)
	case against == "released" && ref == "":
		return fmt.Errorf("bench eval: --against released needs --ref, a checkout of hynnsk/SelectiveCL")
	case against == "ours" && !dev.IsCPU():
		return fmt.Errorf("bench eval: our PyTorch evaluation loop runs on the CPU only; on %s use --against released --ref CHECKOUT", dev)
	}
	torch.SetAllowTF32(false, false)
	tmp, err := os.MkdirTemp("", "affgd-bench-eval")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, ckpt, vocab := c.String("data-root"), c.String("checkpoint"), c.String("vocab")
	if root == "" || vocab == "" {
		s, err := synth.Write(filepath.Join(tmp, "synth"), synth.DefaultOptions())
		if err != nil {
			return err
		}
		if root == "" {
			root = s.DataRoot
		}
		if vocab == "" {
			vocab = s.Vocab
		}
	}
	if ckpt == "" {
		fmt.Fprintln(os.Stderr, "bench eval: writing a full-size random checkpoint (ViT-S/16 DINO, ViT-B/16 CLIP, fresh head)")
		dp, cp := filepath.Join(tmp, "dino.pth"), filepath.Join(tmp, "clip.pt")
		if err := dino.WriteRandom(dp, dino.ViTS16(), 1); err != nil {
			return err
		}
		if err := clip.WriteRandom(cp, clip.ViTB16(), 2, clip.FormatStateDict); err != nil {
			return err
		}
		m, err := train.Load(train.Files{DINO: dp, CLIP: cp, Vocab: vocab, Divide: data.Seen}) // written from the CPU
		if err != nil {
			return err
		}
		ckpt = filepath.Join(tmp, "model.pth")
		if err := train.SaveCheckpoint(ckpt, m); err != nil {
			return err
		}
	}
	ts, err := data.OpenTest(root, data.Seen)
	if err != nil {
		return err
	}
	m, err := train.Load(train.Files{Checkpoint: ckpt, Vocab: vocab, Divide: data.Seen, Device: dev})
	if err != nil {
		return err
	}
	if _, err := m.SetPrecision(train.Precision{BackboneDType: c.String("backbone-dtype")}, dev); err != nil {
		return fmt.Errorf("--backbone-dtype: %w", err)
	}
	n := len(ts.Items)
	if l := c.Int("limit"); l > 0 && l < n {
		n = l
	}
	bs := c.Int("batch-size")
	if bs <= 0 {
		bs = evaluate.DefaultBatchSize(dev)
	}
	// A warm-up batch, then the timed pass over the set.
	if _, err := evaluate.Run(m, ts, evaluate.Options{Limit: min(bs, n), Device: dev, BatchSize: bs}); err != nil {
		return err
	}
	var mem memFigures
	mem.reset(dev)
	before := torch.ReadCounters()
	start := time.Now()
	if _, err := evaluate.Run(m, ts, evaluate.Options{Limit: n, Device: dev, BatchSize: bs}); err != nil {
		return err
	}
	goSecs := time.Since(start).Seconds()
	mem.read(dev)
	counts := torch.ReadCounters().Sub(before)
	if against == "released" {
		r, err := runReleased(py, ref, dev, threads, "--no-step", "--infer-images", fmt.Sprint(n))
		if err != nil {
			return err
		}
		goRate := float64(n) / goSecs
		fmt.Printf("eval of %d test images, %d threads, %s\n", n, threads, dev)
		fmt.Printf("  affgd     %8.2f images/s  (decode, transform, test_forward, metrics; %s)\n", goRate, dur(goSecs))
		fmt.Printf("  released  %8.2f images/s  (test_forward alone, batch 1, random inputs; median %s per image)\n", 1/r.Infer, dur(r.Infer))
		fmt.Printf("  peak memory  affgd: %s\n", mem)
		fmt.Printf("               released: %s\n", r.mem(!dev.IsCPU(), true))
		if c.Bool("count") {
			printCounts(fmt.Sprintf("per image (affgd side: decode, transform, inference, metrics; %d images)", n), []torch.Counters{counts}, n)
		}
		return nil
	}

	pyOut, err := runPython(py, filepath.Join("tests", "bench", "bench_eval.py"), "--base", filepath.Join(root, "Seen"),
		"--checkpoint", ckpt, "--vocab", vocab, "--threads", fmt.Sprint(threads), "--limit", fmt.Sprint(n))
	if err != nil {
		return err
	}
	if int(pyOut["images"]) != n {
		return fmt.Errorf("bench eval: the PyTorch side evaluated %v images, affgd %d", pyOut["images"], n)
	}
	goRate, pyRate := float64(n)/goSecs, float64(n)/pyOut["seconds"]
	fmt.Printf("eval of %d test images, %d threads, %s; affgd at batch %d, backbones in %s (PyTorch: the released batch-1 loop, float32)\n",
		n, threads, dev, bs, c.String("backbone-dtype"))
	fmt.Printf("  affgd    %7.2f images/s  (%s)\n", goRate, dur(goSecs))
	fmt.Printf("  PyTorch  %7.2f images/s  (%s)\n", pyRate, dur(pyOut["seconds"]))
	fmt.Printf("  affgd / PyTorch throughput: %.2f×\n", goRate/pyRate)
	fmt.Printf("  peak memory  affgd: %s\n", mem)
	if c.Bool("count") {
		printCounts(fmt.Sprintf("per image (affgd side: decode, transform, inference, metrics; %d images)", n), []torch.Counters{counts}, n)
	}
	return nil
}
