// Package evaluate scores a model on a test set as the released training script's per-epoch
// evaluation does (METHOD.md §6–7): each test image through the test transform, test_forward's
// three maps cam, ree and rem, and KLD/SIM/NSS of each against the image's GT mask, aggregated
// overall and per class. `affgd eval` and the per-epoch evaluation of `affgd train` both use it.
package evaluate

import (
	"fmt"
	"runtime"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// Maps are the inference maps in report order: cam (the CAM), ree (CLIP-calibrated, the
// released script's headline), rem (calibrated local mean).
var Maps = []string{"cam", "ree", "rem"}

// Options control an evaluation.
type Options struct {
	Size     int                   // test transform side; 0 = data.CropSize (224)
	Limit    int                   // evaluate only the first Limit images; 0 = all
	Workers  int                   // decoding goroutines; 0 = number of CPUs
	Progress func(done, total int) // called after each image; may be nil
	PerImage func(r ImageResult)   // called with each image's figures; may be nil
	Device   torch.Device          // where the images go (the model's device)
	CVResize data.CVResize         // which cv2.resize arithmetic the metrics reproduce (default: IPP, the released stack's)
}

// decoded is one test item's image, decoded ahead of the model.
type decoded struct {
	Item data.TestItem
	RGB  data.Image
	Err  error
}

// ImageResult is one test image's figures for every map.
type ImageResult struct {
	Item   data.TestItem
	Scores map[string]data.Scores
}

// Run evaluates m on ts and returns the summary of every map. Decoding runs in goroutines ahead
// of the model; the transform, inference and metrics run on the calling goroutine, one image at a
// time (test batch size 1, as the released script), each inside its own scope so memory stays
// flat. Any unreadable image or GT stops the evaluation with an error naming the file.
func Run(m *train.Model, ts *data.TestSet, o Options) (report.Summary, error) {
	items := ts.Items
	if o.Limit > 0 && o.Limit < len(items) {
		items = items[:o.Limit]
	}
	if len(items) == 0 {
		return report.Summary{}, fmt.Errorf("evaluate: the test set under %s has no image with a GT mask", ts.Root)
	}
	size := o.Size
	if size == 0 {
		size = data.CropSize
	}
	acc := report.NewAccumulator(Maps...)
	stop := make(chan struct{})
	defer close(stop)
	imgs := decodeAhead(items, o.Workers, stop)
	for i := range items {
		im := <-imgs
		if im.Err != nil {
			return report.Summary{}, im.Err
		}
		res, err := scoreOne(m, im, size, o.Device, o.CVResize)
		if err != nil {
			return report.Summary{}, err
		}
		for _, name := range Maps {
			if err := acc.Add(im.Item.Action, name, res.Scores[name]); err != nil {
				return report.Summary{}, err
			}
		}
		if o.PerImage != nil {
			o.PerImage(res)
		}
		if o.Progress != nil {
			o.Progress(i+1, len(items))
		}
	}
	return acc.Summary(), nil
}

// scoreOne runs one image through the model and scores its three maps against the GT.
func scoreOne(m *train.Model, im decoded, size int, dev torch.Device, cvr data.CVResize) (ImageResult, error) {
	res := ImageResult{Item: im.Item, Scores: map[string]data.Scores{}}
	err := torch.NoGradScope(func(_ *torch.Scope) {
		x, err := data.TestTransform(im.RGB, size)
		if err != nil {
			torch.Raise(fmt.Errorf("%s: %w", im.Item.Image, err))
		}
		gt, err := data.LoadGT(im.Item.GT)
		torch.Raise(err)
		label := torch.FromSliceOn([]int64{im.Item.Label}, dev, 1)
		maps, err := m.Infer(train.Batch{Ego: x.Unsqueeze(0).To(dev), Label: label})
		if err != nil {
			torch.Raise(fmt.Errorf("%s: %w", im.Item.Image, err))
		}
		for name, t := range map[string]*torch.Tensor{"cam": maps.CAM, "ree": maps.REE, "rem": maps.REM} {
			s, err := data.EvaluateCV(t.Select(0, 0), gt, cvr)
			if err != nil {
				torch.Raise(fmt.Errorf("%s: %w", im.Item.GT, err))
			}
			res.Scores[name] = s
		}
	})
	if err != nil {
		return res, fmt.Errorf("evaluate: %w", err)
	}
	return res, nil
}

// decodeAhead decodes the items' images in goroutines (at most workers at a time, each a bounded
// number of images ahead of the consumer) and delivers them in order. Closing stop ends it early.
func decodeAhead(items []data.TestItem, workers int, stop <-chan struct{}) <-chan decoded {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	out := make(chan decoded)
	slots := make(chan chan decoded, 2*workers) // in item order; its capacity bounds the lookahead
	sem := make(chan struct{}, workers)
	go func() {
		defer close(slots)
		for _, it := range items {
			slot := make(chan decoded, 1)
			select {
			case slots <- slot:
			case <-stop:
				return
			}
			sem <- struct{}{}
			go func(it data.TestItem) {
				defer func() { <-sem }()
				img, err := data.DecodeImage(it.Image)
				slot <- decoded{Item: it, RGB: img, Err: err}
			}(it)
		}
	}()
	go func() {
		defer close(out)
		for slot := range slots {
			select {
			case out <- <-slot:
			case <-stop:
				return
			}
		}
	}()
	return out
}
