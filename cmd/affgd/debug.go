package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// modelFlags are the weights and run settings shared by the debug commands.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Usage: "one released-style state dict (vit_model.*, net.* and the head's keys)"},
		&cli.StringFlag{Name: "dino", Usage: "DINO weights (torch.save state dict)"},
		&cli.StringFlag{Name: "clip", Usage: "CLIP weights (OpenAI TorchScript .pt or open_clip state dict)"},
		&cli.StringFlag{Name: "head", Usage: "head weights (state dict with the released key names); default: a fresh head from --seed"},
		&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "seed of a fresh head and of K-means initialisations not injected"},
		&cli.StringFlag{Name: "vocab", EnvVars: []string{"AFFGD_BPE_VOCAB"}, Usage: "CLIP's bpe_simple_vocab_16e6.txt.gz (default: the copy embedded in affgd)"},
		&cli.StringFlag{Name: "divide", Value: "seen", Usage: "class list: seen, unseen or hico"},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N"},
		&cli.StringFlag{Name: "batch", Required: true, Usage: "torch.save dict: exo (B,E,3,H,W), ego (B,3,H,W), label (B) int64"},
		&cli.StringFlag{Name: "out", Required: true, Usage: "folder for the .npy dump"},
	}
}

func debugCommand() *cli.Command {
	return &cli.Command{
		Name:  "debug",
		Usage: "parity interface: dump every intermediate of one step or of inference as .npy (docs/PARITY.md)",
		Subcommands: []*cli.Command{{
			Name:  "step",
			Usage: "one training step: maps, losses, gradients, and parameters after one optimizer step",
			Flags: append(modelFlags(),
				&cli.IntFlag{Name: "epoch", Value: 0, Usage: "0-based epoch (gating starts at 1)"},
				&cli.StringFlag{Name: "kmeans-init", Usage: `JSON {"<sample>": [i, j, k]}: initial centroids as candidate indices`},
				&cli.BoolFlag{Name: "per-image-exo", Usage: "use each exo image's own map in part discovery instead of the released code's row indexing (METHOD 9.1)"},
			),
			Action: debugStep,
		}, {
			Name:   "infer",
			Usage:  "test_forward: cam, ree and rem maps for an ego+label batch",
			Flags:  modelFlags(),
			Action: debugInfer,
		}, debugMetricsCommand()},
	}
}

func loadModel(c *cli.Context) (*train.Model, torch.Device, error) {
	dev, err := torch.ParseDevice(c.String("device"))
	if err != nil {
		return nil, dev, err
	}
	div, err := data.ParseDivide(c.String("divide"))
	if err != nil {
		return nil, dev, err
	}
	m, err := train.Load(train.Files{
		Checkpoint: c.String("checkpoint"), DINO: c.String("dino"), CLIP: c.String("clip"), Head: c.String("head"),
		Seed: c.Uint64("seed"), Vocab: c.String("vocab"), Divide: div, Device: dev,
	})
	return m, dev, err
}

// dump writes each named tensor as DIR/name.npy (folders in the name are created).
func dump(dir string, ts map[string]*torch.Tensor) error {
	for name, t := range ts {
		p := filepath.Join(dir, name+".npy")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var c *torch.Tensor
		if err := torch.Try(func() { c = t.Detach().To(torch.CPU) }); err != nil {
			return err
		}
		if err := npy.SaveTensor(p, c); err != nil {
			return err
		}
	}
	return nil
}

func debugStep(c *cli.Context) error {
	s := torch.NewScope()
	defer s.Close()
	m, dev, err := loadModel(c)
	if err != nil {
		return err
	}
	b, err := train.LoadBatch(c.String("batch"), dev, true)
	if err != nil {
		return err
	}
	inits, err := train.ReadKMeansInit(c.String("kmeans-init"))
	if err != nil {
		return err
	}
	g, err := torch.NewGenerator(c.Uint64("seed"), dev) // K-means draws on the model's device
	if err != nil {
		return err
	}
	opts := discovery.DefaultOptions()
	opts.PerImageExo = c.Bool("per-image-exo")
	d, err := m.DebugStep(b, train.Options{Epoch: c.Int("epoch"), Discovery: opts, KMeansInit: inits, Gen: g})
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := dump(out, d.Arrays); err != nil {
		return err
	}
	stats, _ := json.MarshalIndent(d.Stats, "", "  ")
	return os.WriteFile(filepath.Join(out, "stats.json"), stats, 0o644)
}

func debugInfer(c *cli.Context) error {
	s := torch.NewScope()
	defer s.Close()
	m, dev, err := loadModel(c)
	if err != nil {
		return err
	}
	b, err := train.LoadBatch(c.String("batch"), dev, false)
	if err != nil {
		return err
	}
	maps, err := m.Infer(b)
	if err != nil {
		return err
	}
	return dump(c.String("out"), map[string]*torch.Tensor{"cam": maps.CAM, "ree": maps.REE, "rem": maps.REM})
}

func debugMetricsCommand() *cli.Command {
	return &cli.Command{
		Name:  "metrics",
		Usage: "KLD, SIM and NSS of one (h, w) map against one GT png, exactly as eval computes them",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pred", Required: true, Usage: "the predicted map: .npy, 2-D (h, w), any float type"},
			&cli.StringFlag{Name: "gt", Required: true, Usage: "the GT mask png (grey levels 0..255)"},
			&cli.BoolFlag{Name: "json", Usage: `print {"kld": .., "sim": .., "nss": ..} (NaN as null)`},
		},
		Action: debugMetrics,
	}
}

func debugMetrics(c *cli.Context) error {
	s := torch.NewScope()
	defer s.Close()
	pred, err := npy.LoadTensor(c.String("pred"))
	if err != nil {
		return err
	}
	if pred.Dim() != 2 {
		return fmt.Errorf("%s: want a 2-D (h, w) map, got shape %v", c.String("pred"), pred.Shape())
	}
	gt, err := data.LoadGT(c.String("gt"))
	if err != nil {
		return err
	}
	var sc data.Scores
	if err := torch.Try(func() { sc, err = data.Evaluate(pred.ToDType(torch.Float32), gt) }); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		out, _ := json.Marshal(sc)
		fmt.Println(string(out))
		return nil
	}
	fmt.Printf("KLD %.10g\nSIM %.10g\nNSS %.10g\n", sc.KLD, sc.SIM, sc.NSS)
	return nil
}
