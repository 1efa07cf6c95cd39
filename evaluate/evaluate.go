// Package evaluate scores a model on a test set as the released training script's per-epoch
// evaluation does (METHOD.md §6–7): each test image through the test transform, test_forward's
// three maps cam, ree and rem, and KLD/SIM/NSS of each against the image's GT mask, aggregated
// overall and per class. `affgd eval` and the per-epoch evaluation of `affgd train` both use it.
package evaluate

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

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
	Size      int                   // test transform side; 0 = data.CropSize (224)
	Limit     int                   // evaluate only the first Limit images; 0 = all
	Workers   int                   // decoding and metric goroutines; 0 = number of CPUs
	BatchSize int                   // test images per forward; 0 = DefaultBatchSize(Device)
	Progress  func(done, total int) // called after each image, in order; may be nil
	PerImage  func(r ImageResult)   // called with each image's figures, in order; may be nil
	Device    torch.Device          // where the images go (the model's device)
}

// DefaultBatchSize is the batch size of an evaluation on d when Options.BatchSize is 0 (config
// key eval_batch_size, `affgd eval --batch-size`). On the CPU it is the best of the batch sizes
// measured in docs/BENCHMARKS.md ("evaluate"); on CUDA it was not measured, and 16 is a
// conservative choice (the two backbones at batch 16 need well under 2 GB).
func DefaultBatchSize(d torch.Device) int {
	if d.IsCPU() {
		return cpuBatchSize
	}
	return 16
}

// cpuBatchSize is DefaultBatchSize on the CPU (measured, docs/BENCHMARKS.md).
const cpuBatchSize = 4

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
// of the model; the calling goroutine transforms the images and runs the model on batches of
// BatchSize images (each batch in its own scope, so memory stays flat), then hands each image's
// maps, copied to host memory once per batch, to metric goroutines that read the GT and compute
// KLD/SIM/NSS with data.Evaluate, the per-image function, while the model runs the next batch.
// The figures are accumulated, and Progress and PerImage called, in test-set order on the calling
// goroutine. Every image's maps and figures equal a batch-1 evaluation's (the released test batch
// size) within float32 rounding of the batched kernels (docs/CONFIG.md, eval_batch_size). Any
// unreadable image or GT stops the evaluation with an error naming the file.
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
	bs := o.BatchSize
	if bs <= 0 {
		bs = DefaultBatchSize(o.Device)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	acc := report.NewAccumulator(Maps...)
	stop := make(chan struct{})
	defer close(stop)
	imgs := decodeAhead(items, workers, stop)
	jobs := make(chan metricJob, workers)
	defer close(jobs)
	for range workers {
		go metricWorker(jobs)
	}
	// pending holds each dispatched image's result slot, in test-set order.
	var pending []chan metricResult
	done := 0
	// take accumulates the results at the head of pending while more than keep are pending,
	// waiting for them when block is set and stopping at the first not ready otherwise.
	take := func(block bool, keep int) error {
		for len(pending) > keep {
			var r metricResult
			if block {
				r = <-pending[0]
			} else {
				select {
				case r = <-pending[0]:
				default:
					return nil
				}
			}
			pending = pending[1:]
			if r.err != nil {
				return r.err
			}
			for _, name := range Maps {
				if err := acc.Add(r.res.Item.Action, name, r.res.Scores[name]); err != nil {
					return err
				}
			}
			done++
			if o.PerImage != nil {
				o.PerImage(r.res)
			}
			if o.Progress != nil {
				o.Progress(done, len(items))
			}
		}
		return nil
	}
	for lo := 0; lo < len(items); lo += bs {
		batch := make([]decoded, 0, bs)
		for range min(bs, len(items)-lo) {
			im := <-imgs
			if im.Err != nil {
				if err := take(true, 0); err != nil { // an earlier image's error comes first
					return report.Summary{}, err
				}
				return report.Summary{}, im.Err
			}
			batch = append(batch, im)
		}
		maps, err := inferBatch(m, batch, size, o.Device)
		if err != nil {
			return report.Summary{}, err
		}
		// Each image's job holds a reference to the batch's maps; the last one frees them.
		refs := &atomic.Int32{}
		refs.Store(int32(len(batch)))
		for i, im := range batch {
			slot := make(chan metricResult, 1)
			pending = append(pending, slot)
			jobs <- metricJob{im: im, maps: maps, index: int64(i), refs: refs, out: slot}
		}
		// Results that are ready are accumulated now; at most two batches stay in flight.
		if err := take(false, 0); err != nil {
			return report.Summary{}, err
		}
		if err := take(true, 2*bs); err != nil {
			return report.Summary{}, err
		}
	}
	if err := take(true, 0); err != nil {
		return report.Summary{}, err
	}
	return acc.Summary(), nil
}

// inferBatch runs a batch of decoded images through the model and returns the three maps as
// one (3, N, h, w) float32 tensor in host memory (cam, ree, rem), outside every scope.
func inferBatch(m *train.Model, batch []decoded, size int, dev torch.Device) (*torch.Tensor, error) {
	var out *torch.Tensor
	err := torch.NoGradScope(func(_ *torch.Scope) {
		xs := make([]*torch.Tensor, len(batch))
		labels := make([]int64, len(batch))
		for i, im := range batch {
			x, err := data.TestTransform(im.RGB, size)
			if err != nil {
				torch.Fail("evaluate", "%s: %v", im.Item.Image, err)
			}
			xs[i], labels[i] = x, im.Item.Label
		}
		x := torch.Stack(xs, 0)
		if !dev.IsCPU() {
			x = x.To(dev)
		}
		maps, err := m.Infer(train.Batch{Ego: x, Label: torch.FromSliceOn(labels, dev, int64(len(labels)))})
		if err != nil {
			torch.Fail("evaluate", "%s", batchError(err, len(batch), batch[0].Item.Image, dev))
		}
		out = torch.Escape(torch.Stack([]*torch.Tensor{maps.CAM, maps.REE, maps.REM}, 0).To(torch.CPU))
	})
	return out, err
}

// batchError words a failure of a batch: running out of device memory names the batch size and
// suggests a smaller one.
func batchError(err error, n int, first string, dev torch.Device) string {
	msg := err.Error()
	if strings.Contains(strings.ToLower(msg), "out of memory") {
		return fmt.Sprintf("a batch of %d test images does not fit in the memory of %s; use a smaller batch size (--batch-size %d, config key eval_batch_size): %v",
			n, dev, max(1, n/2), err)
	}
	if n == 1 {
		return fmt.Sprintf("%s: %v", first, err)
	}
	return fmt.Sprintf("the batch of %d test images from %s: %v", n, first, err)
}

type metricJob struct {
	im    decoded
	maps  *torch.Tensor // (3, N, h, w) on the CPU, shared by the batch's jobs
	index int64         // this image's position in the batch
	refs  *atomic.Int32 // jobs still using maps
	out   chan<- metricResult
}

type metricResult struct {
	res ImageResult
	err error
}

// metricWorker reads each job's GT and scores its three maps with data.Evaluate.
func metricWorker(jobs <-chan metricJob) {
	for j := range jobs {
		res, err := scoreMaps(j.im.Item, j.maps, j.index)
		if j.refs.Add(-1) == 0 {
			j.maps.Free()
		}
		j.out <- metricResult{res: res, err: err}
	}
}

// scoreMaps scores the maps of image index of a batch's (3, N, h, w) maps against its GT.
func scoreMaps(it data.TestItem, maps *torch.Tensor, index int64) (ImageResult, error) {
	res := ImageResult{Item: it, Scores: map[string]data.Scores{}}
	err := torch.NoGradScope(func(_ *torch.Scope) {
		gt, err := data.LoadGT(it.GT)
		if err != nil {
			torch.Fail("evaluate", "%v", err)
		}
		for k, name := range Maps {
			s, err := data.Evaluate(maps.Select(0, int64(k)).Select(0, index), gt)
			if err != nil {
				torch.Fail("evaluate", "%s: %v", it.GT, err)
			}
			res.Scores[name] = s
		}
	})
	return res, err
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
