package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

func predictCommand() *cli.Command {
	return &cli.Command{
		Name:      "predict",
		Usage:     "heatmaps of the part that affords an action, for your own images",
		ArgsUsage: " ",
		Description: "For each image writes OUT/<name>_<action>_<map>.png (a jet overlay on the image) and\n" +
			"OUT/<name>_<action>_<map>.npy (the raw (h, w) map) for the maps cam, ree and rem.",
		Flags: append(weightFlags(),
			&cli.StringSliceFlag{Name: "image", Required: true, Usage: "image file (JPEG or PNG); repeat for more"},
			&cli.StringFlag{Name: "action", Required: true, Usage: "the affordance, e.g. hold or cut_with"},
			&cli.StringFlag{Name: "divide", Value: "seen", Usage: "the class list the weights were trained on: seen, unseen or hico"},
			&cli.StringFlag{Name: "out", Value: "predictions", Usage: "output folder"},
			&cli.IntFlag{Name: "size", Value: data.CropSize, Usage: "side the image is resized to before the model"},
			&cli.Float64Flag{Name: "alpha", Value: 0.5, Usage: "heatmap opacity in the overlays"},
		),
		Action: runPredict,
	}
}

func runPredict(c *cli.Context) error {
	div, err := data.ParseDivide(c.String("divide"))
	if err != nil {
		return err
	}
	label, err := div.Label(c.String("action"))
	if err != nil {
		return err
	}
	size := c.Int("size")
	if size < 16 || size%16 != 0 {
		return fmt.Errorf("--size %d: want a positive multiple of the patch size 16", size)
	}
	// Read every image first: a bad file fails before the model loads.
	paths := c.StringSlice("image")
	imgs := make([]data.Image, len(paths))
	for i, p := range paths {
		if imgs[i], err = data.DecodeImage(p); err != nil {
			return err
		}
	}
	m, dev, err := loadWeights(c, div)
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	action := c.String("action")
	for i, p := range paths {
		stem := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		err := torch.NoGradScope(func(_ *torch.Scope) {
			x, err := data.TestTransform(imgs[i], size)
			if err != nil {
				torch.Raise(fmt.Errorf("%s: %w", p, err))
			}
			maps, err := m.Infer(train.Batch{Ego: x.Unsqueeze(0).To(dev), Label: torch.FromSliceOn([]int64{label}, dev, 1)})
			if err != nil {
				torch.Raise(fmt.Errorf("%s: %w", p, err))
			}
			rgb := torch.FromBytes(imgs[i].Pix, torch.Uint8, []int64{int64(imgs[i].H), int64(imgs[i].W), 3}, torch.CPU)
			for _, mp := range []struct {
				name string
				t    *torch.Tensor
			}{{"cam", maps.CAM}, {"ree", maps.REE}, {"rem", maps.REM}} {
				heat := mp.t.Select(0, 0).To(torch.CPU)
				base := filepath.Join(out, fmt.Sprintf("%s_%s_%s", stem, action, mp.name))
				if err := npy.SaveTensor(base+".npy", heat); err != nil {
					torch.Raise(err)
				}
				ov, err := report.Overlay(rgb, heat, c.Float64("alpha"))
				if err != nil {
					torch.Raise(fmt.Errorf("%s: %w", p, err))
				}
				if err := report.WritePNG(base+".png", ov); err != nil {
					torch.Raise(err)
				}
			}
		})
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s/%s_%s_{cam,ree,rem}.{png,npy}\n", p, out, stem, action)
	}
	return nil
}
