package torch

/*
#include "affgd_torch.h"

typedef at_err (*at_unary_fn)(at_tensor, at_tensor *);
typedef at_err (*at_unary_inplace_fn)(at_tensor);
typedef at_err (*at_binary_fn)(at_tensor, at_tensor, at_tensor *);
typedef at_err (*at_binary_inplace_fn)(at_tensor, at_tensor);
typedef at_err (*at_scalar_fn)(at_tensor, double, at_tensor *);
typedef at_err (*at_scalar_inplace_fn)(at_tensor, double);

static at_err call_unary(at_unary_fn f, at_tensor t, at_tensor *out) { return f(t, out); }
static at_err call_unary_inplace(at_unary_inplace_fn f, at_tensor t) { return f(t); }
static at_err call_binary(at_binary_fn f, at_tensor a, at_tensor b, at_tensor *out) { return f(a, b, out); }
static at_err call_binary_inplace(at_binary_inplace_fn f, at_tensor a, at_tensor b) { return f(a, b); }
static at_err call_scalar(at_scalar_fn f, at_tensor a, double s, at_tensor *out) { return f(a, s, out); }
static at_err call_scalar_inplace(at_scalar_inplace_fn f, at_tensor a, double s) { return f(a, s); }
*/
import "C"

import "runtime"

// The shim's entry points, grouped by signature so that one Go helper calls each group.
var (
	op_contiguous = C.at_unary_fn(C.at_contiguous)
	op_clone      = C.at_unary_fn(C.at_clone)
	op_detach     = C.at_unary_fn(C.at_detach)
	op_shallow    = C.at_unary_fn(C.at_shallow)
)

func (t *Tensor) unary(name string, f C.at_unary_fn) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check(name, C.call_unary(f, hdl(t), &out))
	return wrap(out)
}

func (t *Tensor) unaryInPlace(name string, f C.at_unary_inplace_fn) *Tensor {
	defer runtime.KeepAlive(t)
	check(name, C.call_unary_inplace(f, hdl(t)))
	return t
}

func (t *Tensor) binary(name string, f C.at_binary_fn, o *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(o)
	check(name, C.call_binary(f, hdl(t), hdl(o), &out))
	return wrap(out)
}

func (t *Tensor) binaryInPlace(name string, f C.at_binary_inplace_fn, o *Tensor) *Tensor {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(o)
	check(name, C.call_binary_inplace(f, hdl(t), hdl(o)))
	return t
}

func (t *Tensor) scalar(name string, f C.at_scalar_fn, s float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check(name, C.call_scalar(f, hdl(t), C.double(s), &out))
	return wrap(out)
}

func (t *Tensor) scalarInPlace(name string, f C.at_scalar_inplace_fn, s float64) *Tensor {
	defer runtime.KeepAlive(t)
	check(name, C.call_scalar_inplace(f, hdl(t), C.double(s)))
	return t
}

// ---- one input ----

// Neg returns -t.
func (t *Tensor) Neg() *Tensor { return t.unary("neg", C.at_unary_fn(C.at_neg)) }

// Exp returns e^t elementwise.
func (t *Tensor) Exp() *Tensor { return t.unary("exp", C.at_unary_fn(C.at_exp)) }

// Log returns the natural logarithm elementwise.
func (t *Tensor) Log() *Tensor { return t.unary("log", C.at_unary_fn(C.at_log)) }

// Sqrt returns the square root elementwise.
func (t *Tensor) Sqrt() *Tensor { return t.unary("sqrt", C.at_unary_fn(C.at_sqrt)) }

// Rsqrt returns 1/sqrt(t) elementwise.
func (t *Tensor) Rsqrt() *Tensor { return t.unary("rsqrt", C.at_unary_fn(C.at_rsqrt)) }

// Abs returns |t| elementwise.
func (t *Tensor) Abs() *Tensor { return t.unary("abs", C.at_unary_fn(C.at_abs)) }

// Relu returns max(t, 0) elementwise.
func (t *Tensor) Relu() *Tensor { return t.unary("relu", C.at_unary_fn(C.at_relu)) }

// Sigmoid returns 1/(1+e^-t) elementwise.
func (t *Tensor) Sigmoid() *Tensor { return t.unary("sigmoid", C.at_unary_fn(C.at_sigmoid)) }

// Tanh returns tanh(t) elementwise.
func (t *Tensor) Tanh() *Tensor { return t.unary("tanh", C.at_unary_fn(C.at_tanh)) }

// Floor rounds down elementwise.
func (t *Tensor) Floor() *Tensor { return t.unary("floor", C.at_unary_fn(C.at_floor)) }

// Ceil rounds up elementwise.
func (t *Tensor) Ceil() *Tensor { return t.unary("ceil", C.at_unary_fn(C.at_ceil)) }

// Round rounds half to even elementwise.
func (t *Tensor) Round() *Tensor { return t.unary("round", C.at_unary_fn(C.at_round)) }

// Sign returns -1, 0 or 1 elementwise.
func (t *Tensor) Sign() *Tensor { return t.unary("sign", C.at_unary_fn(C.at_sign)) }

// Reciprocal returns 1/t elementwise.
func (t *Tensor) Reciprocal() *Tensor { return t.unary("reciprocal", C.at_unary_fn(C.at_reciprocal)) }

// LogicalNot returns the boolean negation elementwise.
func (t *Tensor) LogicalNot() *Tensor { return t.unary("logical_not", C.at_unary_fn(C.at_logical_not)) }

// IsNaN reports NaN elementwise (a bool tensor).
func (t *Tensor) IsNaN() *Tensor { return t.unary("isnan", C.at_unary_fn(C.at_isnan)) }

// IsInf reports ±Inf elementwise (a bool tensor).
func (t *Tensor) IsInf() *Tensor { return t.unary("isinf", C.at_unary_fn(C.at_isinf)) }

// Sin returns sin(t) elementwise.
func (t *Tensor) Sin() *Tensor { return t.unary("sin", C.at_unary_fn(C.at_sin)) }

// Cos returns cos(t) elementwise.
func (t *Tensor) Cos() *Tensor { return t.unary("cos", C.at_unary_fn(C.at_cos)) }

// Square returns t*t elementwise.
func (t *Tensor) Square() *Tensor { return t.unary("square", C.at_unary_fn(C.at_square)) }

// BitwiseNot returns ~t for integer and bool tensors.
func (t *Tensor) BitwiseNot() *Tensor { return t.unary("bitwise_not", C.at_unary_fn(C.at_bitwise_not)) }

// Relu_ applies max(t, 0) in place and returns t.
func (t *Tensor) Relu_() *Tensor { return t.unaryInPlace("relu_", C.at_unary_inplace_fn(C.at_relu_)) }

// Neg_ negates t in place and returns t.
func (t *Tensor) Neg_() *Tensor { return t.unaryInPlace("neg_", C.at_unary_inplace_fn(C.at_neg_)) }

// Exp_ applies e^t in place and returns t.
func (t *Tensor) Exp_() *Tensor { return t.unaryInPlace("exp_", C.at_unary_inplace_fn(C.at_exp_)) }

// Zero_ fills t with zeros in place and returns t.
func (t *Tensor) Zero_() *Tensor { return t.unaryInPlace("zero_", C.at_unary_inplace_fn(C.at_zero_)) }

// Sigmoid_ applies the sigmoid in place and returns t.
func (t *Tensor) Sigmoid_() *Tensor {
	return t.unaryInPlace("sigmoid_", C.at_unary_inplace_fn(C.at_sigmoid_))
}

// Sqrt_ applies the square root in place and returns t.
func (t *Tensor) Sqrt_() *Tensor { return t.unaryInPlace("sqrt_", C.at_unary_inplace_fn(C.at_sqrt_)) }

// Abs_ applies |t| in place and returns t.
func (t *Tensor) Abs_() *Tensor { return t.unaryInPlace("abs_", C.at_unary_inplace_fn(C.at_abs_)) }

// ---- two tensors, broadcasting ----

// Add returns t + o.
func (t *Tensor) Add(o *Tensor) *Tensor { return t.binary("add", C.at_binary_fn(C.at_add), o) }

// Sub returns t - o.
func (t *Tensor) Sub(o *Tensor) *Tensor { return t.binary("sub", C.at_binary_fn(C.at_sub), o) }

// Mul returns t * o elementwise.
func (t *Tensor) Mul(o *Tensor) *Tensor { return t.binary("mul", C.at_binary_fn(C.at_mul), o) }

// Div returns t / o (true division).
func (t *Tensor) Div(o *Tensor) *Tensor { return t.binary("div", C.at_binary_fn(C.at_div), o) }

// Pow returns t ** o elementwise.
func (t *Tensor) Pow(o *Tensor) *Tensor { return t.binary("pow", C.at_binary_fn(C.at_pow), o) }

// Eq returns t == o elementwise (bool).
func (t *Tensor) Eq(o *Tensor) *Tensor { return t.binary("eq", C.at_binary_fn(C.at_eq), o) }

// Ne returns t != o elementwise (bool).
func (t *Tensor) Ne(o *Tensor) *Tensor { return t.binary("ne", C.at_binary_fn(C.at_ne), o) }

// Gt returns t > o elementwise (bool).
func (t *Tensor) Gt(o *Tensor) *Tensor { return t.binary("gt", C.at_binary_fn(C.at_gt), o) }

// Ge returns t >= o elementwise (bool).
func (t *Tensor) Ge(o *Tensor) *Tensor { return t.binary("ge", C.at_binary_fn(C.at_ge), o) }

// Lt returns t < o elementwise (bool).
func (t *Tensor) Lt(o *Tensor) *Tensor { return t.binary("lt", C.at_binary_fn(C.at_lt), o) }

// Le returns t <= o elementwise (bool).
func (t *Tensor) Le(o *Tensor) *Tensor { return t.binary("le", C.at_binary_fn(C.at_le), o) }

// LogicalAnd returns t && o elementwise.
func (t *Tensor) LogicalAnd(o *Tensor) *Tensor {
	return t.binary("logical_and", C.at_binary_fn(C.at_logical_and), o)
}

// LogicalOr returns t || o elementwise.
func (t *Tensor) LogicalOr(o *Tensor) *Tensor {
	return t.binary("logical_or", C.at_binary_fn(C.at_logical_or), o)
}

// LogicalXor returns t != o as booleans, elementwise.
func (t *Tensor) LogicalXor(o *Tensor) *Tensor {
	return t.binary("logical_xor", C.at_binary_fn(C.at_logical_xor), o)
}

// Maximum returns the elementwise maximum.
func (t *Tensor) Maximum(o *Tensor) *Tensor {
	return t.binary("maximum", C.at_binary_fn(C.at_maximum), o)
}

// Minimum returns the elementwise minimum.
func (t *Tensor) Minimum(o *Tensor) *Tensor {
	return t.binary("minimum", C.at_binary_fn(C.at_minimum), o)
}

// Matmul returns the matrix product with torch.matmul's broadcasting rules.
func (t *Tensor) Matmul(o *Tensor) *Tensor { return t.binary("matmul", C.at_binary_fn(C.at_matmul), o) }

// Mm returns the product of two 2-d matrices.
func (t *Tensor) Mm(o *Tensor) *Tensor { return t.binary("mm", C.at_binary_fn(C.at_mm), o) }

// Bmm returns the batched product of two 3-d tensors.
func (t *Tensor) Bmm(o *Tensor) *Tensor { return t.binary("bmm", C.at_binary_fn(C.at_bmm), o) }

// Remainder returns the Python-style remainder (sign of the divisor).
func (t *Tensor) Remainder(o *Tensor) *Tensor {
	return t.binary("remainder", C.at_binary_fn(C.at_remainder), o)
}

// Atan2 returns atan2(t, o) elementwise.
func (t *Tensor) Atan2(o *Tensor) *Tensor { return t.binary("atan2", C.at_binary_fn(C.at_atan2), o) }

// FloorDivide returns floor(t / o) elementwise.
func (t *Tensor) FloorDivide(o *Tensor) *Tensor {
	return t.binary("floor_divide", C.at_binary_fn(C.at_floor_divide), o)
}

// Add_ adds o to t in place and returns t.
func (t *Tensor) Add_(o *Tensor) *Tensor {
	return t.binaryInPlace("add_", C.at_binary_inplace_fn(C.at_add_), o)
}

// Sub_ subtracts o from t in place and returns t.
func (t *Tensor) Sub_(o *Tensor) *Tensor {
	return t.binaryInPlace("sub_", C.at_binary_inplace_fn(C.at_sub_), o)
}

// Mul_ multiplies t by o in place and returns t.
func (t *Tensor) Mul_(o *Tensor) *Tensor {
	return t.binaryInPlace("mul_", C.at_binary_inplace_fn(C.at_mul_), o)
}

// Div_ divides t by o in place and returns t.
func (t *Tensor) Div_(o *Tensor) *Tensor {
	return t.binaryInPlace("div_", C.at_binary_inplace_fn(C.at_div_), o)
}

// Copy_ copies o's values into t (broadcasting, converting dtype and device) and returns t.
func (t *Tensor) Copy_(o *Tensor) *Tensor {
	return t.binaryInPlace("copy_", C.at_binary_inplace_fn(C.at_copy_), o)
}

// ---- tensor and scalar ----

// AddScalar returns t + s.
func (t *Tensor) AddScalar(s float64) *Tensor {
	return t.scalar("add", C.at_scalar_fn(C.at_add_scalar), s)
}

// SubScalar returns t - s.
func (t *Tensor) SubScalar(s float64) *Tensor {
	return t.scalar("sub", C.at_scalar_fn(C.at_sub_scalar), s)
}

// MulScalar returns t * s.
func (t *Tensor) MulScalar(s float64) *Tensor {
	return t.scalar("mul", C.at_scalar_fn(C.at_mul_scalar), s)
}

// DivScalar returns t / s.
func (t *Tensor) DivScalar(s float64) *Tensor {
	return t.scalar("div", C.at_scalar_fn(C.at_div_scalar), s)
}

// PowScalar returns t ** s.
func (t *Tensor) PowScalar(s float64) *Tensor {
	return t.scalar("pow", C.at_scalar_fn(C.at_pow_scalar), s)
}

// RSubScalar returns s - t.
func (t *Tensor) RSubScalar(s float64) *Tensor {
	return t.scalar("rsub", C.at_scalar_fn(C.at_rsub_scalar), s)
}

// EqScalar returns t == s elementwise (bool).
func (t *Tensor) EqScalar(s float64) *Tensor {
	return t.scalar("eq", C.at_scalar_fn(C.at_eq_scalar), s)
}

// NeScalar returns t != s elementwise (bool).
func (t *Tensor) NeScalar(s float64) *Tensor {
	return t.scalar("ne", C.at_scalar_fn(C.at_ne_scalar), s)
}

// GtScalar returns t > s elementwise (bool).
func (t *Tensor) GtScalar(s float64) *Tensor {
	return t.scalar("gt", C.at_scalar_fn(C.at_gt_scalar), s)
}

// GeScalar returns t >= s elementwise (bool).
func (t *Tensor) GeScalar(s float64) *Tensor {
	return t.scalar("ge", C.at_scalar_fn(C.at_ge_scalar), s)
}

// LtScalar returns t < s elementwise (bool).
func (t *Tensor) LtScalar(s float64) *Tensor {
	return t.scalar("lt", C.at_scalar_fn(C.at_lt_scalar), s)
}

// LeScalar returns t <= s elementwise (bool).
func (t *Tensor) LeScalar(s float64) *Tensor {
	return t.scalar("le", C.at_scalar_fn(C.at_le_scalar), s)
}

// ClampMin returns max(t, s) elementwise.
func (t *Tensor) ClampMin(s float64) *Tensor {
	return t.scalar("clamp_min", C.at_scalar_fn(C.at_clamp_min), s)
}

// ClampMax returns min(t, s) elementwise.
func (t *Tensor) ClampMax(s float64) *Tensor {
	return t.scalar("clamp_max", C.at_scalar_fn(C.at_clamp_max), s)
}

// RemainderScalar returns the Python-style remainder t % s.
func (t *Tensor) RemainderScalar(s float64) *Tensor {
	return t.scalar("remainder", C.at_scalar_fn(C.at_remainder_scalar), s)
}

// FmodScalar returns the C-style remainder fmod(t, s).
func (t *Tensor) FmodScalar(s float64) *Tensor {
	return t.scalar("fmod", C.at_scalar_fn(C.at_fmod_scalar), s)
}

// AddScalar_ adds s to t in place and returns t.
func (t *Tensor) AddScalar_(s float64) *Tensor {
	return t.scalarInPlace("add_", C.at_scalar_inplace_fn(C.at_add_scalar_), s)
}

// MulScalar_ multiplies t by s in place and returns t.
func (t *Tensor) MulScalar_(s float64) *Tensor {
	return t.scalarInPlace("mul_", C.at_scalar_inplace_fn(C.at_mul_scalar_), s)
}

// Fill_ sets every element of t to s and returns t.
func (t *Tensor) Fill_(s float64) *Tensor {
	return t.scalarInPlace("fill_", C.at_scalar_inplace_fn(C.at_fill_), s)
}

// ClampMin_ clamps t from below in place and returns t.
func (t *Tensor) ClampMin_(s float64) *Tensor {
	return t.scalarInPlace("clamp_min_", C.at_scalar_inplace_fn(C.at_clamp_min_), s)
}

// ClampMax_ clamps t from above in place and returns t.
func (t *Tensor) ClampMax_(s float64) *Tensor {
	return t.scalarInPlace("clamp_max_", C.at_scalar_inplace_fn(C.at_clamp_max_), s)
}

// AddAlpha returns t + alpha*o, as torch.add(t, o, alpha=alpha).
func (t *Tensor) AddAlpha(o *Tensor, alpha float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(o)
	check("add", C.at_add_alpha(hdl(t), hdl(o), C.double(alpha), &out))
	return wrap(out)
}

// AddAlpha_ adds alpha*o to t in place, as t.add_(o, alpha=alpha), and returns t.
func (t *Tensor) AddAlpha_(o *Tensor, alpha float64) *Tensor {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(o)
	check("add_", C.at_add_alpha_(hdl(t), hdl(o), C.double(alpha)))
	return t
}

// Clamp limits t to [min, max]; a NaN bound means none on that side.
func (t *Tensor) Clamp(min, max float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("clamp", C.at_clamp(hdl(t), cBool(min == min), C.double(min), cBool(max == max), C.double(max), &out))
	return wrap(out)
}

// Clamp_ is [Tensor.Clamp] in place; it returns t.
func (t *Tensor) Clamp_(min, max float64) *Tensor {
	defer runtime.KeepAlive(t)
	check("clamp_", C.at_clamp_(hdl(t), cBool(min == min), C.double(min), cBool(max == max), C.double(max)))
	return t
}

// Gelu applies the exact (erf) GELU, as nn.GELU().
func (t *Tensor) Gelu() *Tensor { return t.gelu(false) }

// GeluTanh applies the tanh approximation of GELU, as nn.GELU(approximate="tanh").
func (t *Tensor) GeluTanh() *Tensor { return t.gelu(true) }

func (t *Tensor) gelu(tanh bool) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("gelu", C.at_gelu(hdl(t), cBool(tanh), &out))
	return wrap(out)
}

// Softmax returns the softmax along dim.
func (t *Tensor) Softmax(dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("softmax", C.at_softmax(hdl(t), C.int64_t(dim), &out))
	return wrap(out)
}

// LogSoftmax returns the log-softmax along dim.
func (t *Tensor) LogSoftmax(dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("log_softmax", C.at_log_softmax(hdl(t), C.int64_t(dim), &out))
	return wrap(out)
}
