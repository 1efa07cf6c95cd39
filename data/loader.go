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
	// Pin asks for the batches in page-locked (pinned) host memory, for asynchronous copies to a
	// GPU (Batch.Upload). Where CUDA is not available (CPU-only libtorch has no pinned memory) the
	// batches are ordinary CPU tensors; where pinning fails the loader falls back to pageable
	// memory and PinNotice says so.
	Pin bool

	goMemory bool // tests: the reference path (Go memory copied with FromBytes), no pool
}

// Batch of CPU tensors: Exo (B,E,3,crop,crop), Ego (B,3,crop,crop) float32, Label (B) int64,
// plus the sample files.
//
// The tensors belong to the caller: Next creates their handles on the caller's goroutine, so
// they live in the caller's innermost open scope (released when it closes) or, with no scope
// open, until Release or collection. Release frees them at once.
//
// They are views of one of the loader's batch buffers (pinned with LoaderOptions.Pin on a GPU
// machine), which the workers filled in place. The buffer is reused for a later batch only once
// no tensor shares its memory any more (these tensors and everything made from them that shares
// their storage — views, a CPU To — released) and every Upload of it completed; so a batch stays
// valid however long it is held, even after Close. Copy a batch to a device asynchronously only
// with Upload (a ToAsync of its tensors is not waited for before the buffer is reused).
type Batch struct {
	Exo, Ego, Label *torch.Tensor
	Samples         []Sample

	buf  *buffer
	pool *pool
}

// Release frees the batch's tensors now (its buffer returns to the loader's pool once nothing
// else reads it); it is safe to call twice.
func (b *Batch) Release() {
	if b == nil {
		return
	}
	b.Exo.Free()
	b.Ego.Free()
	b.Label.Free()
	if b.pool != nil {
		b.pool.sweep()
	}
}

// Upload queues the copies of Exo, Ego and Label to s's device on its copy stream and returns
// the device tensors (in the caller's scope) with the copies' event; call Upload.Wait before
// queueing the work that reads them, and Upload.Release when done. The batch's buffer is not
// reused before the copies completed. On the CPU (a synchronous CopyStream) the result is the
// batch's own tensors (second handles, sharing the buffer), as the CPU path always was.
func (b *Batch) Upload(s *torch.CopyStream) *torch.Upload {
	u := s.Upload(b.Exo, b.Ego, b.Label)
	if b.pool != nil && s.Async() {
		b.pool.uploaded(b.buf, u.Done)
	}
	return u
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
	pool    *pool
}

type result struct {
	b   *prepared
	buf *buffer // the batch's buffer, also when it failed (it goes back to the pool)
	err error
}

// prepared is a batch as the workers build it: normalised pixels written into its buffer's
// memory (Go slices over the buffer's tensors), turned into tensor views by Next on the
// consumer's goroutine (so workers never call libtorch).
type prepared struct {
	samples []Sample
	n, e, c int
}

type job struct {
	b   int
	ch  chan result
	buf *buffer
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
// Prefetch batches; batches arrive in order. The workers write each batch straight into one of a
// pool of tensor buffers (pinned with Pin on CUDA), which Next allocates as needed and reuses once
// nothing reads a batch any more (see Batch). Call Close when done (also when stopping early): it
// frees the pool.
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
		pool:    newPool(o.BatchSize, o.E, o.Crop, o.Pin, o.goMemory),
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
			buf := l.pool.get(l.done) // from the consumer's goroutine (Next) when none is free
			ch := make(chan result, 1)
			select {
			case l.futures <- ch:
			case <-l.done:
				return
			}
			if buf == nil {
				select {
				case <-l.done:
					ch <- result{err: errors.New("data: loader closed")}
					return
				default:
				}
				l.pool.mu.Lock()
				err := l.pool.allocErr
				l.pool.mu.Unlock()
				ch <- result{err: fmt.Errorf("data: loader: batch %d: %w", b, err)}
				continue
			}
			select {
			case jobs <- job{b, ch, buf}:
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
				b, err := l.build(j.b, j.buf)
				j.ch <- result{b, j.buf, err}
			}
		}()
	}
	return l, nil
}

// Len returns the number of batches in the epoch (from batch 0).
func (l *Loader) Len() int { return l.n }

// Next returns the next batch, or io.EOF after the last one. The batch's tensors belong to the
// caller (see Batch). A batch that fails (an unreadable image) returns its error; the following
// batches still come. While it waits, Next allocates the batch buffers the workers need (on the
// caller's goroutine, since that is a libtorch call) and takes back those nothing reads any more.
func (l *Loader) Next() (*Batch, error) {
	if l.closed {
		return nil, errors.New("data: loader: Next after Close")
	}
	l.pool.sweep()
	var ch chan result
	for ch == nil {
		select {
		case c, ok := <-l.futures:
			if !ok {
				l.ended = true
				return nil, io.EOF
			}
			ch = c
		case <-l.pool.need:
			l.pool.serve()
		}
	}
	var r result
	for got := false; !got; {
		select {
		case r = <-ch:
			got = true
		case <-l.pool.need: // buffers for the batches after this one
			l.pool.serve()
		}
	}
	<-l.sem
	if r.err != nil {
		l.pool.put(r.buf) // no tensor was made of it
		return nil, r.err
	}
	// Created on the caller's goroutine, the tensors are in the caller's scope.
	p, buf := r.b, r.buf
	n, e, c := int64(p.n), int64(p.e), int64(p.c)
	out := &Batch{Samples: p.samples}
	err := torch.Try(func() {
		if l.o.goMemory {
			px := e * 3 * c * c
			out.Exo = torch.FromBytes(floatBytes(buf.exoS[:n*px]), torch.Float32, []int64{n, e, 3, c, c}, torch.CPU)
			out.Ego = torch.FromBytes(floatBytes(buf.egoS[:n*px/e]), torch.Float32, []int64{n, 3, c, c}, torch.CPU)
			out.Label = torch.FromSlice(buf.labelS[:n], n)
			l.pool.put(buf) // copied: the Go memory can take the next batch
			return
		}
		out.buf, out.pool = buf, l.pool
		l.pool.lend(buf) // from here the buffer comes back when nothing shares it
		out.Exo = buf.exo.Narrow(0, 0, n)
		out.Ego = buf.ego.Narrow(0, 0, n)
		out.Label = buf.label.Narrow(0, 0, n)
	})
	if err != nil {
		out.Release()
		return nil, fmt.Errorf("data: loader: %w", err)
	}
	return out, nil
}

// PinNotice says, once the first batch came, why the batches are not in pinned memory although
// LoaderOptions.Pin asked for it on a machine with CUDA (the pinned allocation failed: they are
// copied from pageable memory, which the host waits for); "" when pinned as asked, or not asked.
func (l *Loader) PinNotice() string {
	l.pool.mu.Lock()
	defer l.pool.mu.Unlock()
	if l.pool.pinErr != nil {
		return fmt.Sprintf("pinned host memory could not be allocated (%v): the batches are in pageable memory and each copy to the device blocks the host", l.pool.pinErr)
	}
	return ""
}

// Pinned reports whether the batch buffers allocated so far are in pinned memory.
func (l *Loader) Pinned() bool {
	l.pool.mu.Lock()
	defer l.pool.mu.Unlock()
	return l.pool.pinned
}

// Close stops the workers and frees the batches prepared but not taken. It is safe to call
// early and more than once.
func (l *Loader) Close() {
	l.once.Do(func() {
		l.closed = true
		close(l.done)
		l.wg.Wait() // the dispatcher stops at done; the workers finish their batch
		for ch := range l.futures {
			<-ch // prepared batches live in the pool's buffers, freed below
		}
		select {
		case <-l.pool.give: // an answer the dispatcher did not wait for
		default:
		}
		l.pool.close()
	})
}

// build decodes and transforms batch b. Each image is resized, cropped and flipped straight into
// its slot of one byte buffer per batch half (exocentric, egocentric), and each half is
// normalised into one float buffer, so there is no per-image copy; the values are
// TrainTransform's, bit for bit (the normalisation is elementwise), written into buf's memory
// (its first rows for a short last batch). It runs on a worker goroutine and touches no tensor.
func (l *Loader) build(b int, buf *buffer) (*prepared, error) {
	start := b * l.o.BatchSize
	end := min(start+l.o.BatchSize, len(l.set.Items))
	n, e, c := end-start, l.o.E, l.o.Crop
	px := c * c * 3
	exoPix := make([]byte, n*e*px)
	egoPix := make([]byte, n*px)
	out := &prepared{samples: make([]Sample, 0, n), n: n, e: e, c: c}
	for pos := start; pos < end; pos++ {
		rng := ItemRand(l.o.Seed, l.o.Epoch, pos)
		smp := l.set.Sample(l.perm[pos], e, rng)
		out.samples = append(out.samples, smp)
		i := pos - start
		buf.labelS[i] = int64(smp.Label)
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
	if err := normalizeInto(buf.exoS[:len(exoPix)], exoPix, n*e, c, c); err != nil {
		return nil, fmt.Errorf("data: loader: batch %d: %v", b, err)
	}
	if err := normalizeInto(buf.egoS[:len(egoPix)], egoPix, n, c, c); err != nil {
		return nil, fmt.Errorf("data: loader: batch %d: %v", b, err)
	}
	return out, nil
}
