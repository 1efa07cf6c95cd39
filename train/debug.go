package train

import (
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
)

// BaseLR is the released optimizer's base learning rate.
const BaseLR = 0.001

// Dump is everything `affgd debug step` writes: arrays by dump name (docs/PARITY.md) and the
// step's statistics.
type Dump struct {
	Arrays map[string]*torch.Tensor
	Stats  map[string]any
}

// DebugStep runs one training step exactly as the released code does — forward, zero_grad,
// backward, one SGD step with the four parameter groups — and returns every array of the parity
// dump: the maps and losses, grad/<param> before the step and param/<name> (parameters and
// buffers) after it. The arrays live in the caller's scope.
func (m *Model) DebugStep(b Batch, o Options) (*Dump, error) {
	opt, err := optim.NewSGD(m.Head.ParamGroups(BaseLR))
	if err != nil {
		return nil, err
	}
	d := &Dump{Arrays: map[string]*torch.Tensor{}}
	// The training step itself ([Model.Step]); its hook takes the maps, losses and gradients
	// before the update.
	_, fig, err := m.Step(b, opt, o, StepOptions{AfterBackward: func(r *Result) {
		for k, v := range map[string]*torch.Tensor{
			"S_ego": r.SEgo, "S_exo": r.SExo, "D_ego": r.DEgo, "D_exo": r.DExo, "sam_hard": r.SamHard,
			"reliable": r.Reliable, "p_score": r.PScore, "W_ego": r.WEgo, "W_exo": r.WExo,
			"logits_ego": r.LogitsEgo, "logits_exo": r.LogitsExo,
		} {
			if v != nil { // nil: part discovery did not run (prototypical loss off)
				d.Arrays[k] = v.Detach()
			}
		}
		for name, t := range map[string]*torch.Tensor{"L_ce_ego": r.LCeEgo, "L_ce_exo": r.LCeExo, "L_pix": r.LPix, "L_proto": r.LProto, "loss": r.Loss} {
			if t != nil { // nil: a term of weight 0 (Options.Weights)
				d.Arrays[name] = t.Detach().Reshape()
			}
		}
		for _, n := range m.Head.NamedTensors() {
			if g := n.Tensor.Grad(); g != nil {
				d.Arrays["grad/"+n.Name] = g.Clone()
			}
		}
		d.Stats = map[string]any{"num_candidates": r.NumCandidates}
	}})
	if err != nil {
		return nil, err
	}
	d.Stats["empty_pixel_samples"], d.Stats["empty_proto_rows"] = fig.EmptyPixel, fig.EmptyProto
	err = torch.Try(func() {
		for _, n := range m.Head.NamedTensors() {
			d.Arrays["param/"+n.Name] = n.Tensor.Detach().Clone()
		}
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}
