package train

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/torch"
)

// TestCheckpointAcrossDevices: a checkpoint and a training state written from a model on the test
// device load into a model on the CPU, and the other way round, bit for bit (files hold CPU
// tensors whatever the device; loading maps them to the model's device). With
// AFFGD_TEST_DEVICE=cuda:0 this is the GPU↔CPU case; on the CPU it runs the same code path.
func TestCheckpointAcrossDevices(t *testing.T) {
	r := releasedData(t)
	dev := testdev.Device(t)
	for _, c := range []struct {
		name     string
		from, to torch.Device
	}{{"test device to cpu", dev, torch.CPU}, {"cpu to test device", torch.CPU, dev}} {
		t.Run(c.name, func(t *testing.T) {
			src, err := Load(Files{Checkpoint: r.ckpt, Vocab: r.vocab, Divide: data.Seen, Device: c.from})
			if err != nil {
				t.Fatal(err)
			}
			opt, sched := newOptim(t, src)
			g, err := torch.NewGenerator(5, c.from)
			if err != nil {
				t.Fatal(err)
			}
			stepOnce(t, src, opt, g, 0, 1) // momentum buffers exist on c.from
			dir := t.TempDir()
			ckpt, state := filepath.Join(dir, "last.pth"), filepath.Join(dir, "state.pt")
			if err := SaveCheckpoint(ckpt, src); err != nil {
				t.Fatal(err)
			}
			if err := SaveState(state, src, opt, sched, State{Config: []byte("a: 1\n")}); err != nil {
				t.Fatal(err)
			}
			dst, err := Load(Files{Checkpoint: ckpt, Vocab: r.vocab, Divide: data.Seen, Device: c.to})
			if err != nil {
				t.Fatalf("checkpoint written on %s, loaded on %s: %v", c.from, c.to, err)
			}
			dopt, dsched := newOptim(t, dst)
			if _, err := LoadState(state, dst, dopt, dsched); err != nil {
				t.Fatalf("state written on %s, loaded on %s: %v", c.from, c.to, err)
			}
			want, got := snapshot(src, opt), snapshot(dst, dopt)
			if len(got) != len(want) {
				t.Fatalf("%d head tensors and momentum buffers, want %d", len(got), len(want))
			}
			for k, w := range want {
				if !bytes.Equal(got[k], w) {
					t.Errorf("%s differs after the round trip", k)
				}
			}
			for _, n := range dst.Head.NamedTensors() {
				if n.Tensor.Device() != c.to {
					t.Errorf("%s loaded on %s, want %s", n.Name, n.Tensor.Device(), c.to)
				}
			}
		})
	}
}
