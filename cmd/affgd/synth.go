package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/synth"
)

// synthCommand is `affgd synth`: write the embedded default dataset and tiny random backbones.
func synthCommand() *cli.Command {
	def := synth.DefaultOptions()
	return &cli.Command{
		Name:  "synth",
		Usage: "write the embedded default: a small drawn dataset in AGD20K layout and tiny random-weight backbones",
		Description: "Draws objects whose action-specific part (colour, texture, outline) is what tells the actions\n" +
			"apart, exocentric images with a hand on that part, egocentric images, and soft GT masks of the\n" +
			"part, in DIR/data/Seen/...; writes DIR/weights/dino_tiny.pth (DINO format), clip_tiny.pt (OpenAI\n" +
			"TorchScript format) and a copy of CLIP's vocabulary. Same options and seed, same bytes.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "output folder (new or empty; see --force)"},
			&cli.Uint64Flag{Name: "seed", Value: def.Seed, Usage: "random seed of the drawings and the weights"},
			&cli.StringFlag{Name: "actions", Value: strings.Join(def.Actions, ","), Usage: fmt.Sprintf("comma-separated AGD20K-Seen action names (at most %d)", synth.MaxActions)},
			&cli.IntFlag{Name: "objects", Value: def.Objects, Usage: fmt.Sprintf("objects per action (1..%d)", synth.MaxObjects)},
			&cli.IntFlag{Name: "exo", Value: def.Exo, Usage: "exocentric training images per ACTION/OBJECT folder"},
			&cli.IntFlag{Name: "ego", Value: def.Ego, Usage: "egocentric training images per folder"},
			&cli.IntFlag{Name: "test", Value: def.Test, Usage: "egocentric test images (each with a GT png) per folder"},
			&cli.IntFlag{Name: "size", Value: def.Size, Usage: fmt.Sprintf("longest image side in px; each image's is drawn in [2/3·size, size] (%d..%d)", synth.MinSize, synth.MaxSize)},
			&cli.BoolFlag{Name: "force", Usage: "use a non-empty folder: remove the files an earlier synth listed in its " + synth.ManifestName + ", keep all others, overwrite ours"},
			&cli.StringFlag{Name: "vocab", Usage: "CLIP vocabulary (bpe_simple_vocab_16e6.txt.gz) to copy into DIR/weights (default: $AFFGD_BPE_VOCAB, else the copy embedded in affgd)"},
			&cli.BoolFlag{Name: "full-size", Usage: "write full-size random backbones (DINO ViT-S/16, CLIP ViT-B/16; ~700 MB) instead of the tiny ones"},
			&cli.StringFlag{Name: "sheet", Usage: "also write a contact-sheet PNG of the images to this path"},
		},
		Action: runSynth,
	}
}

func runSynth(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("synth: unexpected argument %q (options are flags, e.g. --out DIR)", c.Args().First())
	}
	o := synth.Options{
		Seed:        c.Uint64("seed"),
		Objects:     c.Int("objects"),
		Exo:         c.Int("exo"),
		Ego:         c.Int("ego"),
		Test:        c.Int("test"),
		Size:        c.Int("size"),
		Force:       c.Bool("force"),
		VocabSource: c.String("vocab"),
		FullSize:    c.Bool("full-size"),
	}
	for _, a := range strings.Split(c.String("actions"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Actions = append(o.Actions, a)
		}
	}
	start := time.Now()
	res, err := synth.Write(c.String("out"), o)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s in %.1fs\n", res.Dir, time.Since(start).Seconds())
	fmt.Printf("  dataset  %s  (Seen layout: %d actions × %d objects; %d exocentric, %d egocentric, %d test images, %d GT masks)\n",
		res.DataRoot, len(o.Actions), o.Objects, res.Exo, res.Ego, res.Test, res.GT)
	for _, a := range o.Actions {
		fmt.Printf("           %-12s %s\n", a, strings.Join(res.Objects[a], ", "))
	}
	fmt.Printf("  dino     %s  (DINO state dict: %s)\n", res.DINO, describeDINO())
	fmt.Printf("  clip     %s  (OpenAI TorchScript: %s)\n", res.CLIP, synth.TinyCLIP())
	fmt.Printf("  vocab    %s\n", res.Vocab)
	if res.Removed > 0 {
		fmt.Printf("  removed  %d files of the earlier synth in that folder\n", res.Removed)
	}
	if n := len(res.Foreign); n > 0 {
		fmt.Printf("  warning  %d files under %s were not written by synth and will be part of the dataset, e.g. %s\n",
			n, res.DataRoot, filepath.Join(res.Dir, res.Foreign[0]))
	}
	if p := c.String("sheet"); p != "" {
		if err := res.Sheet(p); err != nil {
			return err
		}
		fmt.Printf("  sheet    %s\n", p)
	}
	return nil
}

func describeDINO() string {
	d := synth.TinyDINO()
	return fmt.Sprintf("width %d, %d block, %d heads, patch %d, %d px", d.EmbedDim, d.Depth, d.Heads, d.PatchSize, d.ImgSize)
}
