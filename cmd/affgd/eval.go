package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
	"github.com/affgd/affgd/trainer"
)

// datasets maps eval's --dataset names to their class lists.
var datasets = map[string]data.Divide{
	"agd20k-seen": data.Seen, "agd20k-unseen": data.Unseen, "hico-iif": data.HICO,
}

// weightFlags are the flags that name a model's weights (eval, predict).
func weightFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Usage: "a released-style state dict (ours or the authors'): vit_model.*, net.* and the head's keys"},
		&cli.StringFlag{Name: "dino", Usage: "DINO weights, with --clip and --head instead of --checkpoint"},
		&cli.StringFlag{Name: "clip", Usage: "CLIP weights (OpenAI TorchScript .pt or open_clip state dict)"},
		&cli.StringFlag{Name: "head", Usage: "head weights (state dict with the released key names); without it a fresh, untrained head from --seed"},
		&cli.Uint64Flag{Name: "seed", Usage: "seed of a fresh head"},
		&cli.StringFlag{Name: "vocab", EnvVars: []string{"AFFGD_BPE_VOCAB"}, Usage: "CLIP's bpe_simple_vocab_16e6.txt.gz (default: the copy embedded in affgd)"},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"},
		&cli.IntFlag{Name: "threads", Usage: "libtorch intra-op threads (0 = libtorch's default)"},
		&cli.BoolFlag{Name: "tf32", Usage: "CUDA: TF32 matrix products and convolutions (faster, not parity; ignored on the CPU)"},
		&cli.StringFlag{Name: "backbone-dtype", Value: "float32", Usage: "dtype of the image backbones: float32, bf16 or fp16 (bf16/fp16: faster, not parity; docs/CONFIG.md)"},
	}
}

// checkFlag checks an integer flag against the limits of the config key it stands for
// (trainer.CheckRange), so that every command takes what `affgd train` takes.
func checkFlag(c *cli.Context, flag, key string) error {
	if err := trainer.CheckRange(key, float64(c.Int(flag))); err != nil {
		return fmt.Errorf("--%s %d: %w", flag, c.Int(flag), err)
	}
	return nil
}

// loadWeights builds the model named by the weight flags for the classes of div.
func loadWeights(c *cli.Context, div data.Divide) (*train.Model, torch.Device, error) {
	dev, err := torch.ParseDevice(c.String("device"))
	if err != nil {
		return nil, dev, err
	}
	if err := checkFlag(c, "threads", "threads"); err != nil {
		return nil, dev, err
	}
	if n := c.Int("threads"); n > 0 {
		if err := torch.SetNumThreads(n); err != nil {
			return nil, dev, err
		}
	}
	if _, err := train.ParseBackboneDType(c.String("backbone-dtype")); err != nil {
		return nil, dev, fmt.Errorf("--backbone-dtype: %w", err)
	}
	m, err := train.Load(train.Files{
		Checkpoint: c.String("checkpoint"), DINO: c.String("dino"), CLIP: c.String("clip"), Head: c.String("head"),
		Seed: c.Uint64("seed"), Vocab: c.String("vocab"), Divide: div, Device: dev,
	})
	if err != nil {
		return nil, dev, err
	}
	notice, err := m.SetPrecision(train.Precision{TF32: c.Bool("tf32"), BackboneDType: c.String("backbone-dtype")}, dev)
	if err != nil {
		return nil, dev, fmt.Errorf("--backbone-dtype: %w", err)
	}
	if notice != "" {
		fmt.Fprintln(os.Stderr, "affgd: --tf32: "+notice)
	}
	return m, dev, nil
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "KLD/SIM/NSS of the cam, ree and rem maps on a test set (METHOD.md section 7)",
		Flags: append(weightFlags(),
			&cli.StringFlag{Name: "dataset", Required: true, Usage: "agd20k-seen, agd20k-unseen or hico-iif"},
			&cli.StringFlag{Name: "data-root", Required: true, Usage: "the dataset root (AGD20K: the folder holding Seen/ and Unseen/)"},
			&cli.BoolFlag{Name: "per-class", Usage: "also a table per action class"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of tables"},
			&cli.IntFlag{Name: "limit", Usage: "evaluate the first N test images only"},
			&cli.IntFlag{Name: "workers", Usage: "image decoding goroutines (0 = one per CPU)"},
			&cli.StringFlag{Name: "per-image", Usage: "also write every image's figures to this JSON-lines file"},
			&cli.IntFlag{Name: "batch-size", Usage: "test images per forward (0 = the device's default); each image's figures equal batch 1's within 1e-6"},
		),
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	name := strings.ToLower(c.String("dataset"))
	div, ok := datasets[name]
	if !ok {
		return fmt.Errorf("--dataset %q: want agd20k-seen, agd20k-unseen or hico-iif", c.String("dataset"))
	}
	for _, f := range []struct{ flag, key string }{{"workers", "workers"}, {"limit", "test_limit"}} {
		if err := checkFlag(c, f.flag, f.key); err != nil {
			return err
		}
	}
	ts, err := data.OpenTest(c.String("data-root"), div)
	if err != nil {
		return err
	}
	if bs := c.Int("batch-size"); bs < 0 {
		return fmt.Errorf("--batch-size %d: want ≥ 1 (or 0, the device's default)", bs)
	}
	m, dev, err := loadWeights(c, div)
	if err != nil {
		return err
	}
	n := len(ts.Items)
	if l := c.Int("limit"); l > 0 && l < n {
		n = l
	}
	bar := progressbar.NewOptions(n, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("eval "+name),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowIts(),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
		progressbar.OptionSetVisibility(term.IsTerminal(int(os.Stderr.Fd())))) // no bar in logs
	var perImage *os.File
	if p := c.String("per-image"); p != "" {
		if perImage, err = os.Create(p); err != nil {
			return err
		}
		defer perImage.Close()
	}
	start := time.Now()
	sum, err := evaluate.Run(m, ts, evaluate.Options{
		Limit: c.Int("limit"), Workers: c.Int("workers"), Device: dev, BatchSize: c.Int("batch-size"),
		Progress: func(done, _ int) { _ = bar.Set(done) },
		PerImage: func(r evaluate.ImageResult) {
			if perImage != nil {
				line, _ := json.Marshal(map[string]any{"image": r.Item.Image, "gt": r.Item.GT, "action": r.Item.Action, "scores": r.Scores})
				fmt.Fprintln(perImage, string(line))
			}
		},
	})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if c.Bool("json") {
		out, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(out))
		return nil
	}
	fmt.Printf("%s: %d images, %.1f images/s\n", name, n, float64(n)/secs)
	fmt.Print(sum.Table(c.Bool("per-class")))
	return nil
}
