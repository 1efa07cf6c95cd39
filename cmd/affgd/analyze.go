package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/analyze"
	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/trainer"
)

func analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:  "analyze",
		Usage: "check the method's assumptions on a dataset: CLIP ego vs exo response, part discovery per class, the effect of K",
		Description: "Writes into --out: analysis.json, analysis.md and PNG plots (README, \"Analysis\"): activation.png (a),\n" +
			"discovery.png (b) and clusters.png (c). --split train (default) uses the training images (epoch 0's order and\n" +
			"augmentation from --seed) with their exocentric views; --split test the egocentric test images against their GT\n" +
			"masks, for (a) only. Settings (gamma1, gamma2, alpha, kmeans_k, num_exo, sizes, exo_maps) come from --config\n" +
			"(e.g. a run's config.yaml) when given, else the released defaults; flags override both.",
		Flags: append(weightFlags(),
			&cli.StringFlag{Name: "data-root", Required: true, Usage: "the dataset root (AGD20K: the folder holding Seen/ and Unseen/)"},
			&cli.StringFlag{Name: "divide", Value: "seen", Usage: "seen, unseen or hico"},
			&cli.StringFlag{Name: "split", Value: analyze.SplitTrain, Usage: "train (ego and exo images) or test (ego images with GT)"},
			&cli.StringFlag{Name: "out", Value: "analysis", Usage: "folder for the tables and plots"},
			&cli.StringFlag{Name: "config", Usage: "a training config (YAML) to take the method's settings from"},
			&cli.IntFlag{Name: "limit", Usage: "analyse the first N samples only (0 = all)"},
			&cli.IntFlag{Name: "batch-size", Value: 8, Usage: "samples per forward"},
			&cli.IntFlag{Name: "workers", Usage: "image decoding goroutines (0 = one per CPU)"},
			&cli.Float64Flag{Name: "gamma1", Usage: "γ1 (default: the config's, 0.6)"},
			&cli.Float64Flag{Name: "gamma2", Usage: "γ2 (default: the config's, 0.6)"},
			&cli.Float64Flag{Name: "alpha", Usage: "α (default: the config's, 0.6)"},
			&cli.IntFlag{Name: "kmeans-k", Usage: "K of the part-discovery figures (default: the config's, 3); (c) covers 2…5 and it"},
		),
		Action: runAnalyze,
	}
}

func runAnalyze(c *cli.Context) error {
	cfg := trainer.DefaultConfig()
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = trainer.LoadConfig(p); err != nil {
			return err
		}
	}
	if c.IsSet("gamma1") {
		cfg.Gamma1 = c.Float64("gamma1")
	}
	if c.IsSet("gamma2") {
		cfg.Gamma2 = c.Float64("gamma2")
	}
	if c.IsSet("alpha") {
		cfg.Alpha = c.Float64("alpha")
	}
	if c.IsSet("kmeans-k") {
		cfg.KMeansK = c.Int("kmeans-k")
	}
	// The method's keys are range-checked as training checks them (paths are not needed here).
	check := cfg
	check.DataRoot, check.DINO, check.CLIP, check.OutDir = "x", "x", "x", "x"
	if err := check.Validate(); err != nil {
		return err
	}
	split := c.String("split")
	if split != analyze.SplitTrain && split != analyze.SplitTest {
		return fmt.Errorf("--split %q: want train or test", split)
	}
	if c.Int("limit") < 0 || c.Int("batch-size") < 1 {
		return fmt.Errorf("--limit must be ≥ 0 and --batch-size ≥ 1")
	}
	div, err := data.ParseDivide(c.String("divide"))
	if err != nil {
		return fmt.Errorf("--divide: %w", err)
	}
	m, dev, err := loadWeights(c, div)
	if err != nil {
		return err
	}
	o := analyze.Options{
		Split: split, Resize: cfg.ResizeSize, Size: cfg.CropSize, E: cfg.NumExo, BatchSize: c.Int("batch-size"),
		Limit: c.Int("limit"), Seed: cfg.Seed, Workers: c.Int("workers"), Device: dev,
		Gamma1: cfg.Gamma1, Gamma2: cfg.Gamma2, Alpha: cfg.Alpha, K: cfg.KMeansK, PerImageExo: cfg.ExoMaps == trainer.ExoMapsPerImage,
		Progress: func(done, total int) { fmt.Fprintf(os.Stderr, "\ranalyze: %d/%d samples", done, total) },
	}
	res, err := analyze.Run(m, c.String("data-root"), div, o)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.String("out"), 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	files, err := analyze.Write(c.String("out"), res)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(f)
	}
	return nil
}
