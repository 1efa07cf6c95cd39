package trainer

import (
	"context"
	"slices"
	"testing"

	"github.com/affgd/affgd/torch"
)

// The deterministic key parses, is documented among the keys, is on for the run only (the
// process's switch is restored afterwards) and may change on --resume (a machine setting).
func TestDeterministicKey(t *testing.T) {
	c, err := ParseConfig([]byte("deterministic: true\n"))
	if err != nil || !c.Deterministic {
		t.Fatalf("deterministic: true gave %+v, %v", c.Deterministic, err)
	}
	if !slices.Contains(Keys(), "deterministic") {
		t.Errorf("Keys() lacks deterministic: %v", Keys())
	}
	s := smallSynth(t)
	cfg := smallConfig(t, s)
	cfg.Epochs, cfg.Deterministic = 1, false
	if err := Run(context.Background(), cfg, false, &recorder{}); err != nil {
		t.Fatal(err)
	}
	before := torch.Deterministic()
	cfg.Epochs, cfg.Deterministic = 2, true
	if err := Run(context.Background(), cfg, true, &recorder{}); err != nil {
		t.Fatalf("--resume with deterministic changed: %v", err)
	}
	if torch.Deterministic() != before {
		t.Error("the run left the process's deterministic switch changed")
	}
}
