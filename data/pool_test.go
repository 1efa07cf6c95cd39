package data

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
)

// batchRecord is what a batch (or its error) reads as: every byte of its tensors, the samples.
type batchRecord struct {
	data []byte
	err  string
}

func record(b *Batch) []byte {
	var buf []byte
	buf = append(buf, fmt.Sprint(b.Exo.Shape(), b.Ego.Shape(), b.Label.Shape())...)
	buf = append(buf, b.Exo.Bytes()...)
	buf = append(buf, b.Ego.Bytes()...)
	buf = append(buf, b.Label.Bytes()...)
	return append(buf, fmt.Sprint(b.Samples)...)
}

// epochRecords runs one epoch and records every batch; hold keeps the batches (unreleased)
// until the epoch ends, so their buffers cannot be reused meanwhile.
func epochRecords(t *testing.T, s *TrainSet, o LoaderOptions, hold bool) []batchRecord {
	t.Helper()
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []batchRecord
	var held []*Batch
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out = append(out, batchRecord{err: err.Error()})
			continue
		}
		out = append(out, batchRecord{data: record(b)})
		if hold {
			held = append(held, b)
		} else {
			b.Release()
		}
	}
	for _, b := range held {
		b.Release()
	}
	return out
}

// The pooled batches equal, byte for byte, the batches copied from Go memory with FromBytes (the
// loader before the pool), for several seeds, epochs and batch sizes (short last batches
// included, a batch of one, one batch larger than the set) and with failing batches.
func TestPooledBatchesEqualFromBytes(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bad.Items[3].Path, []byte("not an image"), 0o644)
	for _, c := range []struct {
		name string
		set  *TrainSet
		o    LoaderOptions
	}{
		{"B4 last 3", s, LoaderOptions{BatchSize: 4, Seed: 1, Epoch: 0}},
		{"B5 last 1 epoch 2", s, LoaderOptions{BatchSize: 5, Seed: 1, Epoch: 2}},
		{"B1 seed 9", s, LoaderOptions{BatchSize: 1, Seed: 9, Epoch: 1, Workers: 3}},
		{"B16 one short batch", s, LoaderOptions{BatchSize: 16, Seed: 3, Epoch: 4, E: 2}},
		{"B3 resumed", s, LoaderOptions{BatchSize: 3, Seed: 5, Epoch: 1, StartBatch: 2}},
		{"B2 failing batches", bad, LoaderOptions{BatchSize: 2, Seed: 2, Epoch: 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.Resize, o.Crop = 40, 32
			if o.Workers == 0 {
				o.Workers = 2
			}
			ref := o
			ref.goMemory = true
			want := epochRecords(t, c.set, ref, false)
			for _, hold := range []bool{false, true} {
				got := epochRecords(t, c.set, o, hold)
				if len(got) != len(want) {
					t.Fatalf("hold %v: %d batches, want %d", hold, len(got), len(want))
				}
				failed := 0
				for i := range want {
					if got[i].err != want[i].err || !bytes.Equal(got[i].data, want[i].data) {
						t.Errorf("hold %v: batch %d differs (error %q, want %q)", hold, i, got[i].err, want[i].err)
					}
					if want[i].err != "" {
						failed++
					}
				}
				if c.set == bad && (failed == 0 || failed == len(want)) {
					t.Errorf("%d of %d batches failed: the case does not test a failing batch among good ones", failed, len(want))
				}
			}
		})
	}
}

// No buffer is reused while a batch, or a tensor sharing its memory, is alive: batches and views
// held while the loader runs on (through several epochs' worth of batches) keep their contents;
// a CPU Upload holds its buffer too. Released buffers are reused (the pool stays small).
func TestPoolNoReuseWhileHeld(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	o := LoaderOptions{BatchSize: 2, Resize: 40, Crop: 32, Seed: 4, Epoch: 1, Workers: 2, Prefetch: 1}
	ref := o
	ref.goMemory = true
	want := epochRecords(t, s, ref, false)
	cpu, err := torch.NewCopyStream(torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type held struct {
		i      int
		b      *Batch
		view   *torch.Tensor // Exo reshaped, its batch released
		upload *torch.Upload // a CPU upload, its batch released
	}
	var hs []held
	for i := 0; ; i++ {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		h := held{i: i}
		switch i % 3 {
		case 0:
			h.b = b
		case 1:
			h.view = b.Exo.Reshape(-1)
			h.b = &Batch{Samples: b.Samples}
			b.Release()
		case 2:
			h.upload = b.Upload(cpu)
			h.b = &Batch{Exo: h.upload.Tensors[0], Ego: h.upload.Tensors[1], Label: h.upload.Tensors[2], Samples: b.Samples}
			b.Release()
		}
		hs = append(hs, h)
	}
	// Everything above is still held; run a released batch through every buffer the pool has.
	check := func() {
		for _, h := range hs {
			switch {
			case h.view != nil:
				exo := want[h.i].data
				if !bytes.Contains(exo, h.view.Bytes()) {
					t.Errorf("batch %d: the view of its exocentric images changed", h.i)
				}
			default:
				if got := record(h.b); !bytes.Equal(got, want[h.i].data) {
					t.Errorf("batch %d changed while held", h.i)
				}
			}
		}
	}
	check()
	if n := l.pool.buffers(); n < len(hs) {
		t.Errorf("%d buffers for %d batches held", n, len(hs))
	}
	// Another epoch through a second loader, and the held batches still read the same.
	_ = epochRecords(t, s, LoaderOptions{BatchSize: 2, Resize: 40, Crop: 32, Seed: 8, Workers: 2}, false)
	check()
	for _, h := range hs {
		h.b.Release()
		h.view.Free()
		h.upload.Release()
	}
	// Reuse: with nothing held, a long run stays within the prefetch's buffers plus the consumer's.
	l2, err := NewTrainLoader(s, LoaderOptions{BatchSize: 1, Resize: 40, Crop: 32, Workers: 2, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for {
		b, err := l2.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	if n := l2.pool.buffers(); n > 4 {
		t.Errorf("%d buffers for 11 batches released one by one with prefetch 2", n)
	}
}

// Live tensors and bytes stay flat over epochs, and a loader closed in the middle of an epoch
// frees its pool; a batch held across Close stays readable and is freed by its release.
func TestPoolMemory(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	o := LoaderOptions{BatchSize: 3, Resize: 40, Crop: 32, Workers: 2, Seed: 6}
	live := func() (int64, int64) {
		return testref.Settle(torch.LiveTensors), testref.Settle(torch.LiveBytes)
	}
	t0, b0 := live()
	for epoch := range 3 {
		o.Epoch = epoch
		epochRecords(t, s, o, epoch == 1)
		if tn, bn := live(); tn != t0 || bn != b0 {
			t.Errorf("after epoch %d: %d live tensors (%d bytes), %d (%d) before", epoch, tn, bn, t0, b0)
		}
	}
	ref := o
	ref.goMemory, ref.Epoch = true, 0
	want := epochRecords(t, s, ref, false)
	o.Epoch = 0
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	if tn, _ := live(); tn <= t0 {
		t.Fatalf("no tensors live with a loader running (%d, %d before)", tn, t0)
	}
	l.Close()
	if got := record(b); !bytes.Equal(got, want[0].data) {
		t.Error("a batch held across Close changed")
	}
	b.Release()
	if tn, bn := live(); tn != t0 || bn != b0 {
		t.Errorf("after Close mid-epoch: %d live tensors (%d bytes), %d (%d) before", tn, bn, t0, b0)
	}
}

// Pinned memory that cannot be allocated: the loader falls back to pageable buffers, says why
// once (PinNotice), and its batches are the same bytes.
func TestPinFallback(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	o := LoaderOptions{BatchSize: 4, Resize: 40, Crop: 32, Workers: 2, Seed: 3}
	want := epochRecords(t, s, o, false)
	defer func(f func([]int64, torch.DType, bool) (*torch.Tensor, bool, error)) { emptyHost = f }(emptyHost)
	real := emptyHost
	emptyHost = func(shape []int64, dt torch.DType, pin bool) (*torch.Tensor, bool, error) {
		if pin {
			return nil, false, errors.New("cudaHostAlloc: out of memory")
		}
		return real(shape, dt, pin)
	}
	o.Pin = true
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; ; i++ {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(record(b), want[i].data) {
			t.Errorf("batch %d differs in pageable memory", i)
		}
		b.Release()
	}
	if n := l.PinNotice(); !strings.Contains(n, "cudaHostAlloc: out of memory") || !strings.Contains(n, "pageable") {
		t.Errorf("PinNotice %q", n)
	}
	if l.Pinned() {
		t.Error("Pinned after the fallback")
	}
	// Without the fault (and without CUDA here) nothing is said.
	emptyHost = real
	l2, _ := NewTrainLoader(s, o)
	defer l2.Close()
	if b, err := l2.Next(); err != nil {
		t.Fatal(err)
	} else {
		b.Release()
	}
	if n := l2.PinNotice(); n != "" {
		t.Errorf("PinNotice %q without a failure", n)
	}
	if l2.Pinned() != torch.CUDAIsAvailable() {
		t.Errorf("Pinned %v with CUDA available %v", l2.Pinned(), torch.CUDAIsAvailable())
	}
}

// A batch that fails gives its buffer back: a run with failing batches, released one by one,
// needs no more buffers than one without failures.
func TestFailedBatchReturnsItsBuffer(t *testing.T) {
	bad, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bad.Items[3].Path, []byte("not an image"), 0o644)
	l, err := NewTrainLoader(bad, LoaderOptions{BatchSize: 1, Resize: 40, Crop: 32, Workers: 1, Prefetch: 1, E: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	failed := 0
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			failed++
			continue
		}
		b.Release()
	}
	if failed < 2 {
		t.Fatalf("%d batches failed, want several", failed)
	}
	if n := l.pool.buffers(); n > 3 {
		t.Errorf("%d buffers with prefetch 1 and %d failed batches: failed batches keep theirs", n, failed)
	}
}
