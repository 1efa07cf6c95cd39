package train

import (
	"fmt"
	"math"
)

// LossWeights weight the four losses in the total (the ablation rows of the paper's table). A
// weight of 0 removes its term: it is not computed at all (for the prototypical loss, neither
// are part discovery and its masks), its Result field is nil and every other term is exactly
// what it is with it. A weight of 1 adds the term as released, without a multiplication. The
// yaml names are the config keys under loss_weights.
type LossWeights struct {
	CEEgo float64 `yaml:"ce_ego"`
	CEExo float64 `yaml:"ce_exo"`
	Pixel float64 `yaml:"pixel"`
	Proto float64 `yaml:"proto"`
}

// AllLosses weights every loss 1, as released.
var AllLosses = LossWeights{CEEgo: 1, CEExo: 1, Pixel: 1, Proto: 1}

// Check reports a negative or non-finite weight, naming its key, or weights that are all 0.
func (w LossWeights) Check() error {
	for _, x := range []struct {
		key string
		v   float64
	}{{"ce_ego", w.CEEgo}, {"ce_exo", w.CEExo}, {"pixel", w.Pixel}, {"proto", w.Proto}} {
		if !(x.v >= 0) || math.IsInf(x.v, 0) {
			return fmt.Errorf("loss_weights.%s = %v: want a finite weight ≥ 0 (0 disables the term)", x.key, x.v)
		}
	}
	if w == (LossWeights{}) {
		return fmt.Errorf("loss_weights: every weight is 0, nothing to train")
	}
	return nil
}
