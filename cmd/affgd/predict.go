package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/report/gallery"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
	"github.com/affgd/affgd/trainer"
)

func predictCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "predict",
		Usage:     "heatmaps of the part that affords an action, for your own images",
		ArgsUsage: " ",
		Description: "For each image writes OUT/<name>_<action>_<map>.png (a jet overlay on the image) and\n" +
			"OUT/<name>_<action>_<map>.npy (the raw (h, w) map) for the maps cam, ree and rem. <name> is the\n" +
			"image's file name without its extension, with _2, _3, … added when two images share one;\n" +
			"OUT/index.tsv lists which image each <name>_<action> prefix comes from.",
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
	cmd.Flags = append(cmd.Flags, reportFlags(false)...)
	return cmd
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
	if err := trainer.CheckRange("crop_size", float64(size)); err != nil || size%16 != 0 {
		return fmt.Errorf("--size %d: want a multiple of the patch size 16 in [16, %d]", size, trainer.MaxCropSize)
	}
	if a := c.Float64("alpha"); !(a >= 0 && a <= 1) {
		return fmt.Errorf("--alpha %v: want a number in [0, 1]", a)
	}
	// Read every image first: a bad file fails before the model loads.
	paths := c.StringSlice("image")
	imgs := make([]data.Image, len(paths))
	for i, p := range paths {
		if imgs[i], err = data.DecodeImage(p); err != nil {
			return err
		}
	}
	rep, err := newReport(c, false, c.Float64("alpha")) // nil without --report
	if err != nil {
		return err
	}
	defer rep.Close() // removes an unfinished report
	m, dev, err := loadWeights(c, div)
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	action := c.String("action")
	stems := outputStems(paths)
	for i, p := range paths {
		stem := stems[i]
		err := torch.NoGradScope(func(_ *torch.Scope) {
			x, err := data.TestTransform(imgs[i], size)
			if err != nil {
				torch.Fail("predict", "%s: %v", p, err)
			}
			maps, err := m.Infer(train.Batch{Ego: x.Unsqueeze(0).To(dev), Label: torch.FromSliceOn([]int64{label}, dev, 1)})
			if err != nil {
				torch.Fail("predict", "%s: %v", p, err)
			}
			if rep != nil {
				err := rep.Add(gallery.Item{Name: p, Class: c.String("action")}, imgs[i], nil,
					map[string]*torch.Tensor{"cam": maps.CAM.Select(0, 0), "ree": maps.REE.Select(0, 0), "rem": maps.REM.Select(0, 0)})
				if err != nil {
					torch.Fail("predict", "--report: %v", err)
				}
			}
			rgb := torch.FromBytes(imgs[i].Pix, torch.Uint8, []int64{int64(imgs[i].H), int64(imgs[i].W), 3}, torch.CPU)
			for _, mp := range []struct {
				name string
				t    *torch.Tensor
			}{{"cam", maps.CAM}, {"ree", maps.REE}, {"rem", maps.REM}} {
				heat := mp.t.Select(0, 0).To(torch.CPU)
				base := filepath.Join(out, fmt.Sprintf("%s_%s_%s", stem, action, mp.name))
				if err := npy.SaveTensor(base+".npy", heat); err != nil {
					torch.Fail("predict", "%v", err)
				}
				ov, err := report.Overlay(rgb, heat, c.Float64("alpha"))
				if err != nil {
					torch.Fail("predict", "%s: %v", p, err)
				}
				if err := report.WritePNG(base+".png", ov); err != nil {
					torch.Fail("predict", "%v", err)
				}
			}
		})
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s/%s_%s_{cam,ree,rem}.{png,npy}\n", p, out, stem, action)
	}
	if err := writePredictIndex(out, paths, stems, action); err != nil {
		return err
	}
	return finishPredictReport(c, rep, div, dev)
}

// outputStems names each image's outputs after its file name without the extension, made unique
// among the images of one command by a suffix _2, _3, … in the order given (a/one.png and
// b/one.jpg become one and one_2).
func outputStems(paths []string) []string {
	used := map[string]bool{}
	stems := make([]string, len(paths))
	for i, p := range paths {
		base := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		stem := base
		for n := 2; used[stem]; n++ {
			stem = fmt.Sprintf("%s_%d", base, n)
		}
		used[stem] = true
		stems[i] = stem
	}
	return stems
}

// predictIndex is OUT/index.tsv: which image each output prefix was made from.
const predictIndex = "index.tsv"

// writePredictIndex records, in OUT/index.tsv, the image of every output prefix written now; the
// rows of earlier commands into the same folder are kept unless a prefix was written again.
func writePredictIndex(out string, paths, stems []string, action string) error {
	path := filepath.Join(out, predictIndex)
	header := "prefix\timage\taction"
	rows := map[string]string{}
	var order []string
	if b, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			prefix, _, ok := strings.Cut(l, "\t")
			if ok && l != header {
				rows[prefix] = l
				order = append(order, prefix)
			}
		}
	}
	for i, p := range paths {
		prefix := stems[i] + "_" + action
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = p
		}
		if _, ok := rows[prefix]; !ok {
			order = append(order, prefix)
		}
		rows[prefix] = prefix + "\t" + abs + "\t" + action
	}
	var b strings.Builder
	b.WriteString(header + "\n")
	for _, k := range order {
		b.WriteString(rows[k] + "\n")
	}
	if err := atomicfile.WriteBytes(path, []byte(b.String())); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
