package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
	"github.com/affgd/affgd/trainer"
)

func predictCommand() *cli.Command {
	return &cli.Command{
		Name:      "predict",
		Usage:     "heatmaps of the part that affords an action, for your own images",
		ArgsUsage: " ",
		Description: "For each image writes OUT/<name>_<action>_<map>.png (a jet overlay on the image) and\n" +
			"OUT/<name>_<action>_<map>.npy (the raw (h, w) map) for the maps cam, ree and rem. <name> is the\n" +
			"image's file name without its extension, with _2, _3, … added when two images share one;\n" +
			"OUT/index.tsv lists which image each <name>_<action> prefix comes from.\n" +
			"--image takes a file, a folder (its .jpg, .jpeg and .png files) or a glob pattern, and repeats.",
		Flags: append(weightFlags(),
			&cli.StringSliceFlag{Name: "image", Required: true, Usage: "image file (JPEG or PNG), folder of images or glob pattern (quote it); repeat for more"},
			&cli.StringFlag{Name: "action", Required: true, Usage: "the affordance, e.g. hold or cut_with"},
			&cli.StringFlag{Name: "divide", Value: "seen", Usage: "the class list the weights were trained on: seen, unseen or hico"},
			&cli.StringFlag{Name: "out", Value: "predictions", Usage: "output folder"},
			&cli.IntFlag{Name: "size", Value: data.CropSize, Usage: "side the image is resized to before the model"},
			&cli.Float64Flag{Name: "alpha", Value: 0.5, Usage: "heatmap opacity in the overlays"},
			&cli.IntFlag{Name: "batch-size", Usage: "images per forward (0 = the device's default, as eval's); each image's maps equal batch 1's within 1e-6"},
		),
		Action: runPredict,
	}
}

// imageExts are the extensions predict takes from a folder.
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true}

// expandImages turns predict's --image values (files, folders, glob patterns) into the list of
// image files, in the order given (a folder's and a pattern's files sorted by name), each once.
func expandImages(args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, a := range args {
		if st, err := os.Stat(a); err == nil {
			if !st.IsDir() {
				add(a)
				continue
			}
			entries, err := os.ReadDir(a)
			if err != nil {
				return nil, fmt.Errorf("--image %s: %w", a, err)
			}
			n := 0
			for _, e := range entries { // ReadDir sorts by name
				if !e.IsDir() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
					add(filepath.Join(a, e.Name()))
					n++
				}
			}
			if n == 0 {
				return nil, fmt.Errorf("--image %s: the folder holds no .jpg, .jpeg or .png file", a)
			}
			continue
		}
		if strings.ContainsAny(a, "*?[") {
			matches, err := filepath.Glob(a)
			if err != nil {
				return nil, fmt.Errorf("--image %q: bad pattern: %w", a, err)
			}
			if len(matches) == 0 {
				return nil, fmt.Errorf("--image %q: no file matches the pattern", a)
			}
			for _, p := range matches { // Glob sorts by name
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					add(p)
				}
			}
			continue
		}
		return nil, fmt.Errorf("--image %s: no such file or folder", a)
	}
	return out, nil
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
	bs := c.Int("batch-size")
	if bs < 0 {
		return fmt.Errorf("--batch-size %d: want ≥ 1 (or 0, the device's default)", bs)
	}
	paths, err := expandImages(c.StringSlice("image"))
	if err != nil {
		return err
	}
	if bs == 0 {
		dev, err := torch.ParseDevice(c.String("device"))
		if err != nil {
			return err
		}
		bs = evaluate.DefaultBatchSize(dev)
	}
	// The first batch is decoded before the model loads, so a bad file among them fails at once;
	// each later batch is decoded before it runs, and an error names the file.
	first, err := decodeAll(paths[:min(bs, len(paths))])
	if err != nil {
		return err
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
	stems := outputStems(paths)
	for lo := 0; lo < len(paths); lo += bs {
		batch := paths[lo:min(lo+bs, len(paths))]
		imgs := first
		if lo > 0 {
			if imgs, err = decodeAll(batch); err != nil {
				return err
			}
		}
		err = torch.NoGradScope(func(_ *torch.Scope) {
			xs := make([]*torch.Tensor, len(batch))
			labels := make([]int64, len(batch))
			for i, p := range batch {
				x, err := data.TestTransform(imgs[i], size)
				if err != nil {
					torch.Fail("predict", "%s: %v", p, err)
				}
				xs[i], labels[i] = x, label
			}
			x := torch.Stack(xs, 0)
			if !dev.IsCPU() {
				x = x.To(dev)
			}
			maps, err := m.Infer(train.Batch{Ego: x, Label: torch.FromSliceOn(labels, dev, int64(len(labels)))})
			if err != nil {
				if len(batch) == 1 {
					torch.Fail("predict", "%s: %v", batch[0], err)
				}
				torch.Fail("predict", "the batch of %d images from %s (--batch-size %d; try a smaller one if memory ran out): %v", len(batch), batch[0], bs, err)
			}
			// One copy to host memory per batch: (3, N, h, w).
			all := torch.Stack([]*torch.Tensor{maps.CAM, maps.REE, maps.REM}, 0).To(torch.CPU)
			for i, p := range batch {
				stem := stems[lo+i]
				rgb := torch.FromBytes(imgs[i].Pix, torch.Uint8, []int64{int64(imgs[i].H), int64(imgs[i].W), 3}, torch.CPU)
				for k, name := range evaluate.Maps {
					heat := all.Select(0, int64(k)).Select(0, int64(i)).Contiguous()
					base := filepath.Join(out, fmt.Sprintf("%s_%s_%s", stem, action, name))
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
				fmt.Printf("%s: %s/%s_%s_{cam,ree,rem}.{png,npy}\n", p, out, stem, action)
			}
		})
		if err != nil {
			return err
		}
	}
	return writePredictIndex(out, paths, stems, action)
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

// decodeAll decodes the images of one batch, in parallel; an error names the first bad file.
func decodeAll(paths []string) ([]data.Image, error) {
	imgs := make([]data.Image, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i, p := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			imgs[i], errs[i] = data.DecodeImage(p)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return imgs, nil
}
