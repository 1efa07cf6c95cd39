package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/synth"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

func benchPrecisionCommand() *cli.Command {
	return &cli.Command{
		Name: "precision",
		Usage: "what a lower-precision backbone dtype changes against float32, in one command: eval images/s, the largest " +
			"difference of the min-max normalised cam/ree/rem maps, and the change of KLD/SIM/NSS, on the synthetic test " +
			"split of affgd synth with full-size random backbones (ViT-S/16, ViT-B/16) and a fresh head",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "intra-op threads"},
			&cli.StringFlag{Name: "backbone-dtype", Value: "bf16", Usage: "the dtype compared with float32: bf16 or fp16"},
			&cli.IntFlag{Name: "batch-size", Usage: "test images per forward (0 = the device's default)"},
			&cli.IntFlag{Name: "limit", Usage: "the first N test images only (0 = all)"},
		},
		Action: benchPrecision,
	}
}

func benchPrecision(c *cli.Context) error {
	if err := torch.SetNumThreads(c.Int("threads")); err != nil {
		return err
	}
	dev := torch.CPU
	tmp, err := os.MkdirTemp("", "affgd-bench-precision")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s, err := synth.Write(filepath.Join(tmp, "synth"), synth.DefaultOptions())
	if err != nil {
		return err
	}
	dp, cp := filepath.Join(tmp, "dino.pth"), filepath.Join(tmp, "clip.pt")
	if err := dino.WriteRandom(dp, dino.ViTS16(), 1); err != nil {
		return err
	}
	if err := clip.WriteRandom(cp, clip.ViTB16(), 2, clip.FormatStateDict); err != nil {
		return err
	}
	m, err := train.Load(train.Files{DINO: dp, CLIP: cp, Vocab: s.Vocab, Divide: data.Seen, Device: dev})
	if err != nil {
		return err
	}
	ts, err := data.OpenTest(s.DataRoot, data.Seen)
	if err != nil {
		return err
	}
	if l := c.Int("limit"); l > 0 && l < len(ts.Items) {
		ts.Items = ts.Items[:l]
	}
	bs := c.Int("batch-size")
	if bs <= 0 {
		bs = evaluate.DefaultBatchSize(dev)
	}
	low := c.String("backbone-dtype")
	type side struct {
		secs float64
		sum  report.Summary
		maps []*torch.Tensor // per batch: (3, N, h, w) min-max normalised, on the CPU
	}
	runSide := func(dt string) (side, error) {
		var sd side
		if _, err := m.SetPrecision(train.Precision{BackboneDType: dt}, dev); err != nil {
			return sd, err
		}
		if _, err := evaluate.Run(m, ts, evaluate.Options{Limit: min(bs, len(ts.Items)), BatchSize: bs, Device: dev}); err != nil {
			return sd, err // warm-up
		}
		t0 := time.Now()
		if sd.sum, err = evaluate.Run(m, ts, evaluate.Options{BatchSize: bs, Device: dev}); err != nil {
			return sd, err
		}
		sd.secs = time.Since(t0).Seconds()
		sd.maps, err = normalisedMaps(m, ts.Items, bs)
		return sd, err
	}
	ref, err := runSide("float32")
	if err != nil {
		return err
	}
	got, err := runSide(low)
	if err != nil {
		return fmt.Errorf("--backbone-dtype: %w", err)
	}
	n := len(ts.Items)
	fmt.Printf("eval of %d synthetic test images, full-size random backbones, %d threads, CPU, batch %d\n", n, c.Int("threads"), bs)
	fmt.Printf("  float32  %7.2f images/s\n", float64(n)/ref.secs)
	fmt.Printf("  %-7s  %7.2f images/s  (%.2f× float32)\n", low, float64(n)/got.secs, ref.secs/got.secs)
	fmt.Printf("%-5s %22s %12s %12s %12s\n", "map", "max |Δ normalised map|", "ΔKLD", "ΔSIM", "ΔNSS")
	err = torch.WithScope(func(*torch.Scope) {
		for k, name := range evaluate.Maps {
			worst := 0.0
			for b := range ref.maps {
				d := ref.maps[b].Select(0, int64(k)).Sub(got.maps[b].Select(0, int64(k))).Abs().Max().Item()
				worst = math.Max(worst, d)
			}
			a, g := ref.sum.Overall[name], got.sum.Overall[name]
			fmt.Printf("%-5s %22.3g %+12.3g %+12.3g %+12.3g   (float32: KLD %.4f SIM %.4f NSS %.4f)\n",
				name, worst, g.KLD-a.KLD, g.SIM-a.SIM, g.NSS-a.NSS, a.KLD, a.SIM, a.NSS)
		}
	})
	return err
}

// normalisedMaps runs the model on the items' test images in batches of bs and returns each
// batch's maps (3, N, h, w), each map min-max normalised to [0, 1], in host memory.
func normalisedMaps(m *train.Model, items []data.TestItem, bs int) ([]*torch.Tensor, error) {
	var out []*torch.Tensor
	for lo := 0; lo < len(items); lo += bs {
		batch := items[lo:min(lo+bs, len(items))]
		err := torch.NoGradScope(func(*torch.Scope) {
			var xs []*torch.Tensor
			var labels []int64
			for _, it := range batch {
				img, err := data.DecodeImage(it.Image)
				if err != nil {
					torch.Fail("bench", "%v", err)
				}
				x, err := data.TestTransform(img, data.CropSize)
				if err != nil {
					torch.Fail("bench", "%v", err)
				}
				xs, labels = append(xs, x), append(labels, it.Label)
			}
			mp, err := m.Infer(train.Batch{Ego: torch.Stack(xs, 0), Label: torch.FromSlice(labels, int64(len(labels)))})
			if err != nil {
				torch.Fail("bench", "%v", err)
			}
			all := torch.Stack([]*torch.Tensor{mp.CAM, mp.REE, mp.REM}, 0)
			sh := all.Shape()
			flat := all.Reshape(sh[0], sh[1], -1)
			lo, _ := flat.MinDim(2, true)
			hi, _ := flat.MaxDim(2, true)
			norm := flat.Sub(lo).Div(hi.Sub(lo).AddScalar(1e-12)).Reshape(sh...)
			out = append(out, torch.Escape(norm))
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
