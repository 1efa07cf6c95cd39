package torch

/*
#include <stdlib.h>
#include "affgd_torch.h"
*/
import "C"

import "runtime"

import "unsafe"

// Sum returns the sum of all elements (a 0-d tensor).
func (t *Tensor) Sum() *Tensor { return t.SumDims(nil, false) }

// SumDims sums over dims (all when empty), keeping them as size 1 when keepdim.
func (t *Tensor) SumDims(dims []int64, keepdim bool) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("sum", C.at_sum(hdl(t), p, n, cBool(keepdim), &out))
	return wrap(out)
}

// Mean returns the mean of all elements (a 0-d tensor).
func (t *Tensor) Mean() *Tensor { return t.MeanDims(nil, false) }

// MeanDims averages over dims (all when empty).
func (t *Tensor) MeanDims(dims []int64, keepdim bool) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("mean", C.at_mean(hdl(t), p, n, cBool(keepdim), &out))
	return wrap(out)
}

// LogSumExp returns log(sum(exp(t))) over dims (all when empty), computed stably.
func (t *Tensor) LogSumExp(dims []int64, keepdim bool) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("logsumexp", C.at_logsumexp(hdl(t), p, n, cBool(keepdim), &out))
	return wrap(out)
}

// Std returns the standard deviation over dims (all when empty); unbiased divides by n-1,
// otherwise by n (the population std).
func (t *Tensor) Std(dims []int64, unbiased, keepdim bool) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("std", C.at_std(hdl(t), p, n, cBool(unbiased), cBool(keepdim), &out))
	return wrap(out)
}

// Var returns the variance over dims (all when empty), as [Tensor.Std].
func (t *Tensor) Var(dims []int64, unbiased, keepdim bool) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("var", C.at_var(hdl(t), p, n, cBool(unbiased), cBool(keepdim), &out))
	return wrap(out)
}

// Norm returns the p-norm over dims (all when empty), as Tensor.norm(p, dim, keepdim).
func (t *Tensor) Norm(p float64, dims []int64, keepdim bool) *Tensor {
	dp, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("norm", C.at_norm(hdl(t), C.double(p), dp, n, cBool(keepdim), &out))
	return wrap(out)
}

// Prod returns the product of all elements.
func (t *Tensor) Prod() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("prod", C.at_prod(hdl(t), 0, 0, 0, &out))
	return wrap(out)
}

// Max returns the largest element (a 0-d tensor).
func (t *Tensor) Max() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("max", C.at_max_all(hdl(t), &out))
	return wrap(out)
}

// Min returns the smallest element (a 0-d tensor).
func (t *Tensor) Min() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("min", C.at_min_all(hdl(t), &out))
	return wrap(out)
}

// MaxDim returns the maxima along dim and their indices.
func (t *Tensor) MaxDim(dim int64, keepdim bool) (values, indices *Tensor) {
	var v, i C.at_tensor
	defer runtime.KeepAlive(t)
	check("max", C.at_max_dim(hdl(t), C.int64_t(dim), cBool(keepdim), &v, &i))
	return wrap(v), wrap(i)
}

// MinDim returns the minima along dim and their indices.
func (t *Tensor) MinDim(dim int64, keepdim bool) (values, indices *Tensor) {
	var v, i C.at_tensor
	defer runtime.KeepAlive(t)
	check("min", C.at_min_dim(hdl(t), C.int64_t(dim), cBool(keepdim), &v, &i))
	return wrap(v), wrap(i)
}

// Argmax returns the index of the largest element of the flattened tensor.
func (t *Tensor) Argmax() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("argmax", C.at_argmax(hdl(t), 0, 0, 0, &out))
	return wrap(out)
}

// ArgmaxDim returns the indices of the maxima along dim (the first one on ties).
func (t *Tensor) ArgmaxDim(dim int64, keepdim bool) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("argmax", C.at_argmax(hdl(t), 1, C.int64_t(dim), cBool(keepdim), &out))
	return wrap(out)
}

// Argmin returns the index of the smallest element of the flattened tensor.
func (t *Tensor) Argmin() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("argmin", C.at_argmin(hdl(t), 0, 0, 0, &out))
	return wrap(out)
}

// ArgminDim returns the indices of the minima along dim (the first one on ties).
func (t *Tensor) ArgminDim(dim int64, keepdim bool) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("argmin", C.at_argmin(hdl(t), 1, C.int64_t(dim), cBool(keepdim), &out))
	return wrap(out)
}

// Any reports whether any element is non-zero (a 0-d bool tensor).
func (t *Tensor) Any() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("any", C.at_any(hdl(t), &out))
	return wrap(out)
}

// All reports whether every element is non-zero (a 0-d bool tensor).
func (t *Tensor) All() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("all", C.at_all(hdl(t), &out))
	return wrap(out)
}

// Cumsum returns the cumulative sum along dim.
func (t *Tensor) Cumsum(dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("cumsum", C.at_cumsum(hdl(t), C.int64_t(dim), &out))
	return wrap(out)
}

// Topk returns the k largest (or smallest) elements along dim and their indices.
func (t *Tensor) Topk(k, dim int64, largest, sorted bool) (values, indices *Tensor) {
	var v, i C.at_tensor
	defer runtime.KeepAlive(t)
	check("topk", C.at_topk(hdl(t), C.int64_t(k), C.int64_t(dim), cBool(largest), cBool(sorted), &v, &i))
	return wrap(v), wrap(i)
}

// Sort sorts along dim and returns the values and their original indices.
func (t *Tensor) Sort(dim int64, descending, stable bool) (values, indices *Tensor) {
	var v, i C.at_tensor
	defer runtime.KeepAlive(t)
	check("sort", C.at_sort(hdl(t), C.int64_t(dim), cBool(descending), cBool(stable), &v, &i))
	return wrap(v), wrap(i)
}

// Unique returns the sorted distinct values of t, the index of each element of t in them, and
// how often each occurs, as torch.unique(t, sorted=True, return_inverse=True, return_counts=True).
func (t *Tensor) Unique() (values, inverse, counts *Tensor) {
	var v, i, c C.at_tensor
	defer runtime.KeepAlive(t)
	check("unique", C.at_unique(hdl(t), 1, 1, 1, &v, &i, &c))
	return wrap(v), wrap(i), wrap(c)
}

// Einsum evaluates an Einstein summation, as torch.einsum.
func Einsum(equation string, ts ...*Tensor) *Tensor {
	eq := C.CString(equation)
	defer C.free(unsafe.Pointer(eq))
	defer runtime.KeepAlive(ts)
	p, n, hs := handles(ts)
	var out C.at_tensor
	check("einsum", C.at_einsum(eq, p, n, &out))
	_ = hs
	return wrap(out)
}

// Cdist returns the pairwise p-norm distances between the rows of a and b.
func Cdist(a, b *Tensor, p float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(a)
	defer runtime.KeepAlive(b)
	check("cdist", C.at_cdist(hdl(a), hdl(b), C.double(p), &out))
	return wrap(out)
}

// Normalize divides t by its p-norm along dim, clamped below by eps, as F.normalize.
func (t *Tensor) Normalize(p float64, dim int64, eps float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("normalize", C.at_normalize(hdl(t), C.double(p), C.int64_t(dim), C.double(eps), &out))
	return wrap(out)
}
