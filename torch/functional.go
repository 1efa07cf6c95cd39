package torch

/*
#include "affgd_torch.h"
*/
import "C"

import "runtime"

import "math"

// Linear returns x·wᵀ + b, as F.linear; b may be nil.
func Linear(x, w, b *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(b)
	check("linear", C.at_linear(hdl(x), hdl(w), hdl(b), &out))
	return wrap(out)
}

// Conv2dOptions are the geometry of a 2-d convolution; zero values mean stride 1, padding 0,
// dilation 1, groups 1.
type Conv2dOptions struct {
	Stride, Padding, Dilation [2]int64
	Groups                    int64
}

// Conv2d is F.conv2d of x (N,C,H,W) with weight w and optional bias b.
func Conv2d(x, w, b *Tensor, o Conv2dOptions) *Tensor {
	if o.Stride == [2]int64{} {
		o.Stride = [2]int64{1, 1}
	}
	if o.Dilation == [2]int64{} {
		o.Dilation = [2]int64{1, 1}
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(b)
	check("conv2d", C.at_conv2d(hdl(x), hdl(w), hdl(b), (*C.int64_t)(&o.Stride[0]), (*C.int64_t)(&o.Padding[0]),
		(*C.int64_t)(&o.Dilation[0]), C.int64_t(o.Groups), &out))
	return wrap(out)
}

// BatchNorm is F.batch_norm. In training it normalises with the batch statistics and updates
// runningMean and runningVar in place with the given momentum; otherwise it uses them.
// Any of w, b, runningMean, runningVar may be nil.
func BatchNorm(x, w, b, runningMean, runningVar *Tensor, training bool, momentum, eps float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(runningMean)
	defer runtime.KeepAlive(runningVar)
	defer runtime.KeepAlive(b)
	check("batch_norm", C.at_batch_norm(hdl(x), hdl(w), hdl(b), hdl(runningMean), hdl(runningVar),
		cBool(training), C.double(momentum), C.double(eps), &out))
	return wrap(out)
}

// LayerNorm is F.layer_norm over the trailing dimensions given by shape; w and b may be nil.
func LayerNorm(x *Tensor, shape []int64, w, b *Tensor, eps float64) *Tensor {
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(b)
	check("layer_norm", C.at_layer_norm(hdl(x), p, n, hdl(w), hdl(b), C.double(eps), &out))
	return wrap(out)
}

// AvgPool2dOptions configure [AvgPool2d]; a zero Stride means Stride = Kernel.
type AvgPool2dOptions struct {
	Kernel, Stride, Padding [2]int64
	CeilMode                bool
	CountIncludePad         bool
	DivisorOverride         int64 // 0: none
}

// AvgPool2d is F.avg_pool2d.
func AvgPool2d(x *Tensor, o AvgPool2dOptions) *Tensor {
	if o.Stride == [2]int64{} {
		o.Stride = o.Kernel
	}
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	check("avg_pool2d", C.at_avg_pool2d(hdl(x), (*C.int64_t)(&o.Kernel[0]), (*C.int64_t)(&o.Stride[0]),
		(*C.int64_t)(&o.Padding[0]), cBool(o.CeilMode), cBool(o.CountIncludePad), C.int64_t(o.DivisorOverride), &out))
	return wrap(out)
}

// MaxPool2d is F.max_pool2d with dilation 1; a zero stride means stride = kernel.
func MaxPool2d(x *Tensor, kernel, stride, padding [2]int64, ceilMode bool) *Tensor {
	if stride == [2]int64{} {
		stride = kernel
	}
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	check("max_pool2d", C.at_max_pool2d(hdl(x), (*C.int64_t)(&kernel[0]), (*C.int64_t)(&stride[0]),
		(*C.int64_t)(&padding[0]), cBool(ceilMode), &out))
	return wrap(out)
}

// AdaptiveAvgPool2d is F.adaptive_avg_pool2d to an oh×ow output.
func AdaptiveAvgPool2d(x *Tensor, oh, ow int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	check("adaptive_avg_pool2d", C.at_adaptive_avg_pool2d(hdl(x), C.int64_t(oh), C.int64_t(ow), &out))
	return wrap(out)
}

// InterpMode is an interpolation kernel for [Interpolate].
type InterpMode int

// Interpolation kernels.
const (
	Nearest InterpMode = iota
	Bilinear
	Bicubic
)

// InterpolateOptions configure [Interpolate]: give either Size or Scale (as F.interpolate's size
// and scale_factor; with Scale the output size is floor(in·scale) and the scale itself drives the
// coordinate mapping, exactly as PyTorch does).
type InterpolateOptions struct {
	Size         [2]int64
	Scale        [2]float64
	Mode         InterpMode
	AlignCorners bool
	Antialias    bool
}

// Interpolate is F.interpolate for 4-d inputs (N, C, H, W).
func Interpolate(x *Tensor, o InterpolateOptions) *Tensor {
	h, w := o.Size[0], o.Size[1]
	hasScale := o.Scale != [2]float64{}
	if hasScale {
		if o.Size != [2]int64{} {
			Fail("interpolate", "give either a size or a scale factor, not both")
		}
		s := x.Shape()
		if len(s) != 4 {
			Fail("interpolate", "expects a 4-d input (N, C, H, W), got shape %v", s)
		}
		h = int64(math.Floor(float64(s[2]) * o.Scale[0]))
		w = int64(math.Floor(float64(s[3]) * o.Scale[1]))
	}
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	check("interpolate", C.at_interpolate(hdl(x), C.int(o.Mode), C.int64_t(h), C.int64_t(w), cBool(hasScale),
		C.double(o.Scale[0]), C.double(o.Scale[1]), cBool(o.AlignCorners), cBool(o.Antialias), &out))
	return wrap(out)
}

// Reduction says how a loss combines its per-element values.
type Reduction int

// Loss reductions, as PyTorch's reduction="none" | "mean" | "sum".
const (
	ReduceNone Reduction = 0
	ReduceMean Reduction = 1
	ReduceSum  Reduction = 2
)

// CrossEntropy is F.cross_entropy(logits, target) with class-index targets (int64), no class
// weights, ignore_index -100 and no label smoothing.
func CrossEntropy(logits, target *Tensor, r Reduction) *Tensor {
	return CrossEntropyWith(logits, target, nil, r, -100, 0)
}

// CrossEntropyWith is F.cross_entropy with every option; weight may be nil.
func CrossEntropyWith(logits, target, weight *Tensor, r Reduction, ignoreIndex int64, labelSmoothing float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(logits)
	defer runtime.KeepAlive(target)
	defer runtime.KeepAlive(weight)
	check("cross_entropy", C.at_cross_entropy(hdl(logits), hdl(target), hdl(weight), C.int(r),
		C.int64_t(ignoreIndex), C.double(labelSmoothing), &out))
	return wrap(out)
}

// ScaledDotProductAttention is F.scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
// scale=scale) without dropout: softmax(q·kᵀ·scale + mask)·v for q (..., L, E), k (..., S, E),
// v (..., S, Ev). mask may be nil, additive (q's dtype) or boolean (true: takes part), and
// broadcasts to (..., L, S); causal masks the upper triangle and takes no mask. A scale <= 0
// means the default 1/sqrt(E). With libtorch >= 2.1 this runs PyTorch's fused attention kernels
// (the ones nn.MultiheadAttention uses), so give q, k, v the layout the PyTorch code gives them.
func ScaledDotProductAttention(q, k, v, mask *Tensor, causal bool, scale float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(q)
	defer runtime.KeepAlive(k)
	defer runtime.KeepAlive(v)
	defer runtime.KeepAlive(mask)
	check("scaled_dot_product_attention", C.at_scaled_dot_product_attention(hdl(q), hdl(k), hdl(v), hdl(mask),
		cBool(causal), cBool(scale > 0), C.double(scale), &out))
	return wrap(out)
}

// Dropout is F.dropout: in training it zeroes elements with probability p (drawn from g, or the
// global generator when g is nil) and scales the rest by 1/(1-p); otherwise it returns a copy.
func Dropout(x *Tensor, p float64, training bool, g *Generator) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(g)
	check("dropout", C.at_dropout(hdl(x), C.double(p), cBool(training), g.handle(), &out))
	return wrap(out)
}
