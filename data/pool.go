package data

import (
	"fmt"
	"sync"

	"github.com/affgd/affgd/torch"
)

// buffer is the memory of one batch: a full batch's exocentric images, egocentric images and
// labels as three C-contiguous CPU tensors (pinned for a GPU), and Go slices over that memory,
// which the workers fill without calling libtorch. A short last batch uses the first rows.
//
// In the loader's reference mode (LoaderOptions.goMemory, tests only) the slices are Go memory
// and the tensors nil: the batch is then copied into tensors with FromBytes, as the loader did
// before the pool.
type buffer struct {
	exo, ego, label *torch.Tensor // the pool's own handles, in no scope; nil in Go memory
	exoS, egoS      []float32
	labelS          []int64
	uploads         []*torch.Event // the device copies that read the buffer (Batch.Upload)
}

// pool hands buffers to the loader's dispatcher and takes them back once nothing can read them.
// Buffers are allocated on the consumer's goroutine (in Loader.Next, when the dispatcher asks for
// one and none is free), since allocating a tensor is a libtorch call; they come back to the free
// list only when no tensor shares their memory any more (the batch's views released: by
// Batch.Release, a closing scope, or collection) and every upload that read them completed, so a
// buffer is never overwritten while anything can still read it. The pool grows to what the
// consumer holds plus the loader's prefetch, and Loader.Close frees it.
type pool struct {
	n, e, c int  // full batch size, exocentric images per item, crop size
	pin     bool // ask for pinned memory (the batches are copied to a GPU)
	goMem   bool // reference mode: Go memory, no tensors

	need  chan struct{} // the dispatcher asks the consumer for a buffer
	give  chan *buffer  // the consumer's answer: a buffer, or nil with allocErr set
	freed chan struct{} // poked (non-blocking) when a buffer returns to the free list

	mu       sync.Mutex
	free     []*buffer
	out      []*buffer // handed to the consumer in a batch, not back yet
	all      []*buffer // every buffer allocated, for Close
	closed   bool
	pinned   bool  // the buffers are page-locked
	pinErr   error // why pinned memory was asked for and is not used (fallback to pageable)
	allocErr error // the last allocation failure, for the batch that could not get a buffer
}

func newPool(n, e, c int, pin, goMem bool) *pool {
	return &pool{n: n, e: e, c: c, pin: pin, goMem: goMem,
		need: make(chan struct{}), give: make(chan *buffer, 1), freed: make(chan struct{}, 1)}
}

// get returns a buffer for the dispatcher: a free one, else one the consumer allocates (it
// answers in Next), or nil when done closes or the allocation failed (allocErr says why).
func (p *pool) get(done <-chan struct{}) *buffer {
	for {
		p.mu.Lock()
		if k := len(p.free); k > 0 {
			b := p.free[k-1]
			p.free = p.free[:k-1]
			p.mu.Unlock()
			return b
		}
		p.mu.Unlock()
		select {
		case p.need <- struct{}{}:
			select {
			case b := <-p.give:
				return b
			case <-done:
				return nil
			}
		case <-p.freed: // a buffer came back meanwhile
		case <-done:
			return nil
		}
	}
}

// serve answers the dispatcher's request, on the consumer's goroutine: a buffer that came back,
// else a new one.
func (p *pool) serve() {
	p.sweep()
	p.mu.Lock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free = p.free[:k-1]
		p.mu.Unlock()
		p.give <- b
		return
	}
	p.mu.Unlock()
	b, err := p.alloc()
	if err != nil {
		p.mu.Lock()
		p.allocErr = err
		p.mu.Unlock()
		p.give <- nil
		return
	}
	p.give <- b
}

// alloc makes a buffer (consumer's goroutine). Pinned memory that cannot be had falls back, for
// this buffer and the following ones, to pageable memory, and says why (Loader.PinNotice).
func (p *pool) alloc() (*buffer, error) {
	px := 3 * p.c * p.c
	if p.goMem {
		return &buffer{exoS: make([]float32, p.n*p.e*px), egoS: make([]float32, p.n*px), labelS: make([]int64, p.n)}, nil
	}
	p.mu.Lock()
	pin := p.pin && p.pinErr == nil
	p.mu.Unlock()
	b, pinned, err := allocTensors(p.n, p.e, p.c, pin)
	if err != nil && pin {
		p.mu.Lock()
		p.pinErr = err
		p.mu.Unlock()
		b, pinned, err = allocTensors(p.n, p.e, p.c, false)
	}
	if err != nil {
		return nil, fmt.Errorf("data: loader: cannot allocate the memory of a batch of %d: %w", p.n, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed { // cannot happen (Close runs on the consumer's goroutine too); be safe
		b.free()
		return nil, fmt.Errorf("data: loader closed")
	}
	p.pinned = pinned
	p.all = append(p.all, b)
	return b, nil
}

// emptyHost allocates the buffers' tensors (a variable so that tests can fail pinned allocations,
// which a machine without CUDA cannot).
var emptyHost = torch.EmptyHost

func allocTensors(n, e, c int, pin bool) (b *buffer, pinned bool, err error) {
	b = &buffer{}
	shapes := []struct {
		t     **torch.Tensor
		shape []int64
		dt    torch.DType
	}{
		{&b.exo, []int64{int64(n), int64(e), 3, int64(c), int64(c)}, torch.Float32},
		{&b.ego, []int64{int64(n), 3, int64(c), int64(c)}, torch.Float32},
		{&b.label, []int64{int64(n)}, torch.Int64},
	}
	for _, s := range shapes {
		t, pn, err := emptyHost(s.shape, s.dt, pin)
		if err != nil {
			b.free()
			return nil, false, err
		}
		*s.t, pinned = torch.Escape(t), pn // the pool's: no scope of the consumer releases it
	}
	err = torch.Try(func() {
		b.exoS, b.egoS = torch.HostSlice[float32](b.exo), torch.HostSlice[float32](b.ego)
		b.labelS = torch.HostSlice[int64](b.label)
	})
	if err != nil {
		b.free()
		return nil, false, err
	}
	return b, pinned, nil
}

// free releases a buffer's tensors; views of them still alive keep the memory (refcounted).
func (b *buffer) free() {
	b.exo.Free()
	b.ego.Free()
	b.label.Free()
	b.exoS, b.egoS, b.labelS = nil, nil, nil
}

// lend records that b went to the consumer in a batch.
func (p *pool) lend(b *buffer) {
	if p.goMem {
		return
	}
	p.mu.Lock()
	p.out = append(p.out, b)
	p.mu.Unlock()
}

// put returns a buffer no tensor ever shared (a batch that failed) to the free list.
func (p *pool) put(b *buffer) {
	if b == nil {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
	p.poke()
}

func (p *pool) poke() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// uploaded records a device copy that reads b: b comes back only once it completed.
func (p *pool) uploaded(b *buffer, ev *torch.Event) {
	p.mu.Lock()
	b.uploads = append(b.uploads, ev)
	p.mu.Unlock()
}

// sweep moves the lent buffers that nothing can read any more to the free list (libtorch calls:
// the consumer's goroutine, or whichever goroutine releases a batch).
func (p *pool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	back := 0
	keep := p.out[:0]
	for _, b := range p.out {
		if b.inUse() {
			keep = append(keep, b)
			continue
		}
		b.uploads = nil
		p.free = append(p.free, b)
		back++
	}
	clear(p.out[len(keep):])
	p.out = keep
	if back > 0 {
		p.poke()
	}
}

// inUse reports whether a tensor still shares b's memory or an upload of it is still running.
func (b *buffer) inUse() bool {
	for _, ev := range b.uploads {
		if !ev.Done() {
			return true
		}
	}
	return b.exo.StorageShared() || b.ego.StorageShared() || b.label.StorageShared()
}

// close frees every buffer (after the workers stopped). The memory of batches the consumer
// still holds lives on in their views until those are released.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, b := range p.all {
		b.free()
	}
	p.all, p.free, p.out = nil, nil, nil
}

// buffers returns how many buffers the pool allocated (tests).
func (p *pool) buffers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}
