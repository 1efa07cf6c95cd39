// Package optim holds the optimizers and learning-rate schedules affgd trains with, matching
// torch.optim step for step to float32 rounding.
package optim

import (
	"fmt"
	"slices"

	"github.com/affgd/affgd/torch"
)

// ParamGroup is a set of parameters sharing hyperparameters, as a torch.optim param group.
type ParamGroup struct {
	Name        string // for messages and checkpoints; optional
	Params      []*torch.Tensor
	LR          float64
	Momentum    float64
	Dampening   float64
	WeightDecay float64
	Nesterov    bool
}

// SGD is stochastic gradient descent with momentum, dampening, Nesterov momentum and weight
// decay, computing exactly what torch.optim.SGD does (maximize=False):
//
//	d = grad + weight_decay·p
//	buf = d (first step) or momentum·buf + (1−dampening)·d
//	d = d + momentum·buf (Nesterov) or buf
//	p = p − lr·d
type SGD struct {
	Groups []ParamGroup
	bufs   [][]*torch.Tensor // momentum buffers, by group and parameter; nil until first used
}

// NewSGD checks the groups as torch.optim.SGD does and returns the optimizer.
func NewSGD(groups []ParamGroup) (*SGD, error) {
	o := &SGD{Groups: groups, bufs: make([][]*torch.Tensor, len(groups))}
	for i, g := range groups {
		switch {
		case g.LR < 0:
			return nil, fmt.Errorf("optim: group %d (%s): invalid learning rate %g", i, g.Name, g.LR)
		case g.Momentum < 0:
			return nil, fmt.Errorf("optim: group %d (%s): invalid momentum %g", i, g.Name, g.Momentum)
		case g.WeightDecay < 0:
			return nil, fmt.Errorf("optim: group %d (%s): invalid weight decay %g", i, g.Name, g.WeightDecay)
		case g.Nesterov && (g.Momentum <= 0 || g.Dampening != 0):
			return nil, fmt.Errorf("optim: group %d (%s): Nesterov momentum requires a momentum and zero dampening", i, g.Name)
		}
		o.bufs[i] = make([]*torch.Tensor, len(g.Params))
	}
	return o, nil
}

// ZeroGrad clears every parameter's gradient (sets it to None, torch's default).
func (o *SGD) ZeroGrad() {
	for _, g := range o.Groups {
		for _, p := range g.Params {
			p.ZeroGrad()
		}
	}
}

// Step updates every parameter that has a gradient. Parameters without one are skipped, as in
// PyTorch. A failure panics with *torch.Error; run it under torch.Try.
func (o *SGD) Step() {
	torch.NoGrad(func() {
		s := torch.NewScope()
		defer s.Close()
		for gi, g := range o.Groups {
			for pi, p := range g.Params {
				grad := p.Grad()
				if grad == nil {
					continue
				}
				d := grad
				if g.WeightDecay != 0 {
					d = d.AddAlpha(p, g.WeightDecay)
				}
				if g.Momentum != 0 {
					buf := o.bufs[gi][pi]
					if buf == nil {
						buf = torch.Escape(d.Clone().Detach())
						o.bufs[gi][pi] = buf
					} else {
						buf.MulScalar_(g.Momentum).AddAlpha_(d, 1-g.Dampening)
					}
					if g.Nesterov {
						d = d.AddAlpha(buf, g.Momentum)
					} else {
						d = buf
					}
				}
				p.AddAlpha_(d, -g.LR)
			}
		}
	})
}

// MomentumBuffers returns the momentum buffer of every parameter, by group and parameter (nil
// where none exists yet), for checkpoints. The tensors are the optimizer's own.
func (o *SGD) MomentumBuffers() [][]*torch.Tensor { return o.bufs }

// SetMomentumBuffers restores buffers saved from [SGD.MomentumBuffers] (copied; nil entries
// clear), each on its parameter's device and in its dtype. Shapes must match the parameters; on
// an error nothing changes.
func (o *SGD) SetMomentumBuffers(bufs [][]*torch.Tensor) error {
	if len(bufs) != len(o.Groups) {
		return fmt.Errorf("optim: %d buffer groups for %d parameter groups", len(bufs), len(o.Groups))
	}
	// Check everything first, so a bad set leaves the optimizer as it was.
	for gi, g := range o.Groups {
		if len(bufs[gi]) != len(g.Params) {
			return fmt.Errorf("optim: group %d has %d parameters but %d buffers", gi, len(g.Params), len(bufs[gi]))
		}
		for pi, b := range bufs[gi] {
			if b == nil {
				continue
			}
			if ps, bs := g.Params[pi].Shape(), b.Shape(); !slices.Equal(ps, bs) {
				return fmt.Errorf("optim: group %d parameter %d has shape %v but its buffer %v", gi, pi, ps, bs)
			}
		}
	}
	return torch.Try(func() {
		for gi, g := range o.Groups {
			for pi, b := range bufs[gi] {
				if o.bufs[gi][pi] != nil {
					o.bufs[gi][pi].Free()
					o.bufs[gi][pi] = nil
				}
				if b == nil {
					continue
				}
				p := g.Params[pi]
				torch.NoGrad(func() { // a copy, on the parameter's device and in its dtype
					o.bufs[gi][pi] = torch.Escape(b.Detach().To(p.Device()).ToDType(p.DType()).Clone())
				})
			}
		}
	})
}
