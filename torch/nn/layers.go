package nn

import (
	"math"

	"github.com/affgd/affgd/torch"
)

// newParam returns a parameter living outside every scope, recording gradients.
func newParam(t *torch.Tensor) *torch.Tensor { return torch.Escape(t).SetRequiresGrad(true) }

// newBuffer returns a buffer living outside every scope.
func newBuffer(t *torch.Tensor) *torch.Tensor { return torch.Escape(t) }

// kaimingUniform fills w as PyTorch's default Linear/Conv initialisation does:
// kaiming_uniform_(w, a=√5), i.e. U(−1/√fan_in, 1/√fan_in), drawing from g.
func kaimingUniform(w *torch.Tensor, fanIn int64, g *torch.Generator) {
	gain := math.Sqrt(2.0 / (1 + 5.0))
	bound := gain * math.Sqrt(3.0/float64(fanIn))
	w.Uniform_(-bound, bound, g)
}

// Linear is nn.Linear: y = x·Wᵀ + b. Parameter names: weight, bias.
type Linear struct {
	Weight, Bias *torch.Tensor // Bias may be nil
}

// NewLinear returns a Linear layer initialised as PyTorch does (weight first, then bias, both
// drawn from g; nil g draws from libtorch's global generator).
func NewLinear(in, out int64, bias bool, g *torch.Generator, opts ...torch.Option) *Linear {
	l := &Linear{}
	torch.NoGrad(func() {
		l.Weight = newParam(torch.Empty([]int64{out, in}, opts...))
		kaimingUniform(l.Weight, in, g)
		if bias {
			b := 1 / math.Sqrt(float64(in))
			l.Bias = newParam(torch.Empty([]int64{out}, opts...).Uniform_(-b, b, g))
		}
	})
	return l
}

// Forward applies the layer.
func (l *Linear) Forward(x *torch.Tensor) *torch.Tensor { return torch.Linear(x, l.Weight, l.Bias) }

// NamedTensors implements [Module].
func (l *Linear) NamedTensors() []Named {
	out := []Named{{Name: "weight", Tensor: l.Weight}}
	if l.Bias != nil {
		out = append(out, Named{Name: "bias", Tensor: l.Bias})
	}
	return out
}

// Conv2d is nn.Conv2d. Parameter names: weight, bias.
type Conv2d struct {
	Weight, Bias *torch.Tensor // Bias may be nil
	Opts         torch.Conv2dOptions
}

// NewConv2d returns a square-kernel convolution initialised as PyTorch does.
func NewConv2d(in, out, kernel int64, o torch.Conv2dOptions, bias bool, g *torch.Generator, opts ...torch.Option) *Conv2d {
	groups := o.Groups
	if groups == 0 {
		groups = 1
	}
	c := &Conv2d{Opts: o}
	fanIn := in / groups * kernel * kernel
	torch.NoGrad(func() {
		c.Weight = newParam(torch.Empty([]int64{out, in / groups, kernel, kernel}, opts...))
		kaimingUniform(c.Weight, fanIn, g)
		if bias {
			b := 1 / math.Sqrt(float64(fanIn))
			c.Bias = newParam(torch.Empty([]int64{out}, opts...).Uniform_(-b, b, g))
		}
	})
	return c
}

// Forward applies the convolution to x (N, C, H, W).
func (c *Conv2d) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.Conv2d(x, c.Weight, c.Bias, c.Opts)
}

// NamedTensors implements [Module].
func (c *Conv2d) NamedTensors() []Named {
	out := []Named{{Name: "weight", Tensor: c.Weight}}
	if c.Bias != nil {
		out = append(out, Named{Name: "bias", Tensor: c.Bias})
	}
	return out
}

// LayerNorm is nn.LayerNorm over the last dimension. Parameter names: weight, bias.
type LayerNorm struct {
	Weight, Bias *torch.Tensor
	Eps          float64
}

// NewLayerNorm returns a LayerNorm of width dim with weight 1 and bias 0.
func NewLayerNorm(dim int64, eps float64, opts ...torch.Option) *LayerNorm {
	l := &LayerNorm{Eps: eps}
	torch.NoGrad(func() {
		l.Weight = newParam(torch.Ones([]int64{dim}, opts...))
		l.Bias = newParam(torch.Zeros([]int64{dim}, opts...))
	})
	return l
}

// Forward normalises the last dimension of x.
func (l *LayerNorm) Forward(x *torch.Tensor) *torch.Tensor {
	return torch.LayerNorm(x, []int64{l.Weight.Size(0)}, l.Weight, l.Bias, l.Eps)
}

// NamedTensors implements [Module].
func (l *LayerNorm) NamedTensors() []Named {
	return []Named{{Name: "weight", Tensor: l.Weight}, {Name: "bias", Tensor: l.Bias}}
}

// BatchNorm2d is nn.BatchNorm2d with affine weights and running statistics. Names: weight, bias,
// running_mean, running_var, num_batches_tracked.
type BatchNorm2d struct {
	Weight, Bias            *torch.Tensor
	RunningMean, RunningVar *torch.Tensor
	NumBatchesTracked       *torch.Tensor // int64 scalar
	Momentum, Eps           float64
}

// NewBatchNorm2d returns a BatchNorm2d over c channels (weight 1, bias 0, mean 0, var 1),
// momentum 0.1 and eps 1e-5 as PyTorch's defaults.
func NewBatchNorm2d(c int64, opts ...torch.Option) *BatchNorm2d {
	b := &BatchNorm2d{Momentum: 0.1, Eps: 1e-5}
	torch.NoGrad(func() {
		b.Weight = newParam(torch.Ones([]int64{c}, opts...))
		b.Bias = newParam(torch.Zeros([]int64{c}, opts...))
		b.RunningMean = newBuffer(torch.Zeros([]int64{c}, opts...))
		b.RunningVar = newBuffer(torch.Ones([]int64{c}, opts...))
		dev := torch.CPU
		for _, o := range opts {
			if d, ok := o.(torch.Device); ok {
				dev = d
			}
		}
		b.NumBatchesTracked = newBuffer(torch.Zeros(nil, torch.Int64, dev))
	})
	return b
}

// Forward normalises x (N, C, H, W). In training it uses the batch statistics, updates the
// running ones in place and counts the batch, as nn.BatchNorm2d.train() does.
func (b *BatchNorm2d) Forward(x *torch.Tensor, training bool) *torch.Tensor {
	if training {
		torch.NoGrad(func() { b.NumBatchesTracked.AddScalar_(1) })
	}
	return torch.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, training, b.Momentum, b.Eps)
}

// NamedTensors implements [Module].
func (b *BatchNorm2d) NamedTensors() []Named {
	return []Named{
		{Name: "weight", Tensor: b.Weight},
		{Name: "bias", Tensor: b.Bias},
		{Name: "running_mean", Tensor: b.RunningMean, Buffer: true},
		{Name: "running_var", Tensor: b.RunningVar, Buffer: true},
		{Name: "num_batches_tracked", Tensor: b.NumBatchesTracked, Buffer: true},
	}
}
