package trainer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// A libtorch failure deep inside a backbone reaches Run's caller as one line that names each
// layer once — the trainer's position, train's step, DINO's forward, the failing op — and keeps
// the *torch.Error as its cause.
func TestBackboneFailureReadsAsOneLine(t *testing.T) {
	s := smallSynth(t)
	c := smallConfig(t, s)
	c.Epochs, c.MaxSteps = 1, 1
	testModelHook = func(m *train.Model) {
		// A weight of the wrong shape: the last block's qkv (which Features runs) fails with a
		// shape error.
		qkv := m.DINO.Blocks[len(m.DINO.Blocks)-1].Attn.QKV
		sh := qkv.Weight.Shape()
		qkv.Weight = torch.Escape(torch.Zeros([]int64{sh[0], sh[1] + 1}, torch.Float32))
	}
	defer func() { testModelHook = nil }()
	err := Run(context.Background(), c, false, &recorder{})
	if err == nil {
		t.Fatal("training with a broken DINO weight succeeded")
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("the error spans several lines:\n%s", msg)
	}
	for _, layer := range []string{"epoch 1 step 1: ", "train: ", "dino: ", "torch: ", "linear: "} {
		if n := strings.Count(msg, layer); n != 1 {
			t.Errorf("%q appears %d times in %q, want once", layer, n, msg)
		}
	}
	for _, order := range [][2]string{{"epoch 1 step 1", "train: step"}, {"train: step", "dino: features"}, {"dino: features", "torch: linear"}} {
		if i, j := strings.Index(msg, order[0]), strings.Index(msg, order[1]); i < 0 || j < 0 || i > j {
			t.Errorf("%q should come before %q in %q", order[0], order[1], msg)
		}
	}
	var te *torch.Error
	if !errors.As(err, &te) || te.Op != "linear" {
		t.Errorf("errors.As finds %+v, want the *torch.Error of linear", te)
	}
}
