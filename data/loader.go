package data

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/affgd/affgd/torch"
)

// LoaderOptions configure NewTrainLoader. Zero values take defaults: BatchSize 8, E 3, Resize
// ResizeSize, Crop CropSize, Workers runtime.NumCPU(), Prefetch 2·Workers.
type LoaderOptions struct {
	BatchSize, E, Resize, Crop, Workers, Prefetch int
	Seed                                          uint64
	Epoch                                         int
	StartBatch                                    int
}

// Batch of CPU tensors: Exo (B,E,3,crop,crop), Ego (B,3,crop,crop) float32, Label (B) int64,
// plus the sample files.
//
// The tensors belong to the caller: Next creates their handles on the caller's goroutine, so
// they live in the caller's innermost open scope (released when it closes) or, with no scope
// open, until Release or collection. Release frees them at once.
type Batch struct {
	Exo, Ego, Label *torch.Tensor
	Samples         []Sample
}

// Release frees the batch's tensors now; it is safe to call twice.
func (b *Batch) Release() {
	if b == nil {
		return
	}
	b.Exo.Free()
	b.Ego.Free()
	b.Label.Free()
}

// Loader iterates one epoch of training batches; see NewTrainLoader.
type Loader struct {
	set     *TrainSet
	o       LoaderOptions
	perm    []int
	n       int // batches in the epoch
	futures chan chan result
	sem     chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	closed  bool
	ended   bool
}

type result struct {
	b   *prepared
	err error
}

// prepared is a batch as the workers build it: normalised pixels in Go memory, turned into
// tensors by Next on the consumer's goroutine (so workers never call libtorch).
type prepared struct {
	exo, ego []float32 // (n·e, 3, c, c) and (n, 3, c, c)
	labels   []int64
	samples  []Sample
	n, e, c  int
}

type job struct {
	b  int
	ch chan result
}

// splitmix64 is a 64-bit mixing function, used to derive independent generator seeds.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// EpochPermutation returns the order in which epoch visits n items for seed.
func EpochPermutation(seed uint64, epoch, n int) []int {
	r := rand.New(rand.NewPCG(seed, splitmix64(uint64(epoch)^0x5eed0f0e9c4)))
	return r.Perm(n)
}

// ItemRand returns the generator of the item at position pos of epoch: it draws the item's
// partners, its egocentric image, and the crop and flip of each of its images, in that order
// (exocentric images first, then the egocentric one).
func ItemRand(seed uint64, epoch, pos int) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix64(seed), splitmix64(uint64(epoch)<<40^uint64(pos))))
}

// NewTrainLoader iterates one epoch: a permutation of the items drawn from (Seed, Epoch)
// (reshuffled every epoch), batches of BatchSize, the last partial batch kept, starting at batch
// StartBatch (resume). Every random draw of an item (partners, ego choice, crop/flip of each of
// its images) comes from a generator seeded by (Seed, Epoch, item position in the epoch) (see
// ItemRand), so results do not depend on Workers or on where the epoch was resumed. Decoding and
// augmentation run in Workers goroutines ahead of the consumer through a bounded queue of
// Prefetch batches; batches arrive in order. Call Close when done (also when stopping early).
func NewTrainLoader(s *TrainSet, o LoaderOptions) (*Loader, error) {
	if s == nil || len(s.Items) == 0 {
		return nil, errors.New("data: loader: empty training set")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.BatchSize, 8)
	def(&o.E, 3)
	def(&o.Resize, ResizeSize)
	def(&o.Crop, CropSize)
	def(&o.Workers, runtime.NumCPU())
	def(&o.Prefetch, 2*o.Workers)
	if o.BatchSize < 1 || o.E < 1 || o.Resize < 1 || o.Crop < 1 || o.Workers < 1 || o.Prefetch < 1 {
		return nil, fmt.Errorf("data: loader: batch size %d, E %d, resize %d, crop %d, workers %d and prefetch %d must be positive",
			o.BatchSize, o.E, o.Resize, o.Crop, o.Workers, o.Prefetch)
	}
	if o.Crop > o.Resize {
		return nil, fmt.Errorf("data: loader: crop %d is larger than the resize %d of the shorter side", o.Crop, o.Resize)
	}
	if o.Epoch < 0 {
		return nil, fmt.Errorf("data: loader: epoch %d is negative", o.Epoch)
	}
	n := (len(s.Items) + o.BatchSize - 1) / o.BatchSize
	if o.StartBatch < 0 || o.StartBatch > n {
		return nil, fmt.Errorf("data: loader: start batch %d is outside the epoch's %d batches", o.StartBatch, n)
	}
	l := &Loader{
		set: s, o: o, n: n,
		perm:    EpochPermutation(o.Seed, o.Epoch, len(s.Items)),
		futures: make(chan chan result, o.Prefetch),
		sem:     make(chan struct{}, o.Prefetch),
		done:    make(chan struct{}),
	}
	jobs := make(chan job)
	l.wg.Add(1 + o.Workers)
	go func() { // dispatcher: batches in order, at most Prefetch ahead of the consumer
		defer l.wg.Done()
		defer close(jobs)
		defer close(l.futures)
		for b := o.StartBatch; b < n; b++ {
			select {
			case l.sem <- struct{}{}:
			case <-l.done:
				return
			}
			ch := make(chan result, 1)
			select {
			case l.futures <- ch:
			case <-l.done:
				return
			}
			select {
			case jobs <- job{b, ch}:
			case <-l.done:
				ch <- result{err: errors.New("data: loader closed")}
				return
			}
		}
	}()
	for w := 0; w < o.Workers; w++ {
		go func() {
			defer l.wg.Done()
			for j := range jobs {
				b, err := l.build(j.b)
				j.ch <- result{b, err}
			}
		}()
	}
	return l, nil
}

// Len returns the number of batches in the epoch (from batch 0).
func (l *Loader) Len() int { return l.n }

// Next returns the next batch, or io.EOF after the last one. The batch's tensors belong to the
// caller (see Batch). A batch that fails (an unreadable image) returns its error; the following
// batches still come.
func (l *Loader) Next() (*Batch, error) {
	if l.closed {
		return nil, errors.New("data: loader: Next after Close")
	}
	ch, ok := <-l.futures
	if !ok {
		l.ended = true
		return nil, io.EOF
	}
	r := <-ch
	<-l.sem
	if r.err != nil {
		return nil, r.err
	}
	// Created on the caller's goroutine, the tensors are in the caller's scope.
	p := r.b
	n, e, c := int64(p.n), int64(p.e), int64(p.c)
	out := &Batch{Samples: p.samples}
	err := torch.Try(func() {
		out.Exo = torch.FromBytes(floatBytes(p.exo), torch.Float32, []int64{n, e, 3, c, c}, torch.CPU)
		out.Ego = torch.FromBytes(floatBytes(p.ego), torch.Float32, []int64{n, 3, c, c}, torch.CPU)
		out.Label = torch.FromSlice(p.labels, n)
	})
	if err != nil {
		out.Release()
		return nil, fmt.Errorf("data: loader: %w", err)
	}
	return out, nil
}

// Close stops the workers and frees the batches prepared but not taken. It is safe to call
// early and more than once.
func (l *Loader) Close() {
	l.once.Do(func() {
		l.closed = true
		close(l.done)
		l.wg.Wait() // the dispatcher stops at done; the workers finish their batch
		for ch := range l.futures {
			<-ch // prepared batches are Go memory: dropping them frees them
		}
	})
}

// build decodes and transforms batch b. Each image is resized, cropped and flipped straight into
// its slot of one byte buffer per batch half (exocentric, egocentric), and each half is
// normalised into one float buffer, so there is no per-image copy; the values are
// TrainTransform's, bit for bit (the normalisation is elementwise). It runs on a worker
// goroutine and touches no tensor.
func (l *Loader) build(b int) (*prepared, error) {
	start := b * l.o.BatchSize
	end := min(start+l.o.BatchSize, len(l.set.Items))
	n, e, c := end-start, l.o.E, l.o.Crop
	px := c * c * 3
	exoPix := make([]byte, n*e*px)
	egoPix := make([]byte, n*px)
	out := &prepared{samples: make([]Sample, 0, n), labels: make([]int64, 0, n), n: n, e: e, c: c}
	for pos := start; pos < end; pos++ {
		rng := ItemRand(l.o.Seed, l.o.Epoch, pos)
		smp := l.set.Sample(l.perm[pos], e, rng)
		out.samples = append(out.samples, smp)
		out.labels = append(out.labels, smp.Label)
		i := pos - start
		// The exocentric images first, then the egocentric one: the order of the draws.
		for k := 0; k <= e; k++ {
			p, dst := smp.Ego, egoPix[i*px:(i+1)*px]
			if k < e {
				p, dst = smp.Exo[k], exoPix[(i*e+k)*px:(i*e+k+1)*px]
			}
			img, err := DecodeImage(p)
			if err != nil {
				return nil, fmt.Errorf("data: loader: batch %d: %v", b, err)
			}
			oh, ow := ResizedSize(img.H, img.W, l.o.Resize)
			if _, err := trainPixels(dst, img, l.o.Resize, c, DrawCropFlip(rng, oh, ow, c)); err != nil {
				return nil, fmt.Errorf("data: loader: batch %d: %s: %v", b, p, err)
			}
		}
	}
	out.exo = make([]float32, len(exoPix))
	out.ego = make([]float32, len(egoPix))
	if err := normalizeInto(out.exo, exoPix, n*e, c, c); err != nil {
		return nil, fmt.Errorf("data: loader: batch %d: %v", b, err)
	}
	if err := normalizeInto(out.ego, egoPix, n, c, c); err != nil {
		return nil, fmt.Errorf("data: loader: batch %d: %v", b, err)
	}
	return out, nil
}
