package torch

/*
#include "affgd_torch.h"
*/
import "C"

import "runtime"

// Reshape returns t with a new shape (a view when possible); one size may be -1.
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("reshape", C.at_reshape(hdl(t), p, n, &out))
	return wrap(out)
}

// View returns a view of t with a new shape; the strides must allow it.
func (t *Tensor) View(shape ...int64) *Tensor {
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("view", C.at_view(hdl(t), p, n, &out))
	return wrap(out)
}

// Permute returns a view with the dimensions reordered.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("permute", C.at_permute(hdl(t), p, n, &out))
	return wrap(out)
}

// Transpose returns a view with dimensions d0 and d1 swapped.
func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("transpose", C.at_transpose(hdl(t), C.int64_t(d0), C.int64_t(d1), &out))
	return wrap(out)
}

// Flatten merges dimensions start..end (inclusive) into one.
func (t *Tensor) Flatten(start, end int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("flatten", C.at_flatten(hdl(t), C.int64_t(start), C.int64_t(end), &out))
	return wrap(out)
}

// Unsqueeze inserts a dimension of size 1 at dim.
func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("unsqueeze", C.at_unsqueeze(hdl(t), C.int64_t(dim), &out))
	return wrap(out)
}

// Squeeze removes dimension dim if it has size 1.
func (t *Tensor) Squeeze(dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("squeeze", C.at_squeeze(hdl(t), 1, C.int64_t(dim), &out))
	return wrap(out)
}

// SqueezeAll removes every dimension of size 1.
func (t *Tensor) SqueezeAll() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("squeeze", C.at_squeeze(hdl(t), 0, 0, &out))
	return wrap(out)
}

// Expand returns a broadcast view of t with the given shape (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	p, n := cInt64s(shape)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("expand", C.at_expand(hdl(t), p, n, &out))
	return wrap(out)
}

// Repeat tiles t reps[i] times along each dimension.
func (t *Tensor) Repeat(reps ...int64) *Tensor {
	p, n := cInt64s(reps)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("repeat", C.at_repeat(hdl(t), p, n, &out))
	return wrap(out)
}

// RepeatInterleave repeats each element repeats times along dim.
func (t *Tensor) RepeatInterleave(repeats, dim int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("repeat_interleave", C.at_repeat_interleave(hdl(t), C.int64_t(repeats), 1, C.int64_t(dim), &out))
	return wrap(out)
}

// Cat concatenates tensors along dim.
func Cat(ts []*Tensor, dim int64) *Tensor {
	defer runtime.KeepAlive(ts)
	p, n, hs := handles(ts)
	var out C.at_tensor
	check("cat", C.at_cat(p, n, C.int64_t(dim), &out))
	_ = hs
	return wrap(out)
}

// Stack joins tensors of equal shape along a new dimension dim.
func Stack(ts []*Tensor, dim int64) *Tensor {
	defer runtime.KeepAlive(ts)
	p, n, hs := handles(ts)
	var out C.at_tensor
	check("stack", C.at_stack(p, n, C.int64_t(dim), &out))
	_ = hs
	return wrap(out)
}

// Chunk splits t into at most chunks pieces along dim.
func (t *Tensor) Chunk(chunks, dim int64) []*Tensor {
	var p *C.at_tensor
	var n C.int
	defer runtime.KeepAlive(t)
	check("chunk", C.at_chunk(hdl(t), C.int64_t(chunks), C.int64_t(dim), &p, &n))
	return wrapList(p, n)
}

// Split splits t into pieces of size along dim (the last may be smaller).
func (t *Tensor) Split(size, dim int64) []*Tensor {
	var p *C.at_tensor
	var n C.int
	defer runtime.KeepAlive(t)
	check("split", C.at_split(hdl(t), C.int64_t(size), C.int64_t(dim), &p, &n))
	return wrapList(p, n)
}

// Narrow returns the view t[..., start:start+length, ...] along dim.
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("narrow", C.at_narrow(hdl(t), C.int64_t(dim), C.int64_t(start), C.int64_t(length), &out))
	return wrap(out)
}

// Slice returns the view t[..., start:end:step, ...] along dim (Python slice semantics).
func (t *Tensor) Slice(dim, start, end, step int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("slice", C.at_slice(hdl(t), C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), &out))
	return wrap(out)
}

// Select returns the view t[..., index, ...] along dim, removing that dimension.
func (t *Tensor) Select(dim, index int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("select", C.at_select(hdl(t), C.int64_t(dim), C.int64_t(index), &out))
	return wrap(out)
}

// IndexSelect picks the entries index (a 1-d int64 tensor) along dim.
func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(index)
	check("index_select", C.at_index_select(hdl(t), C.int64_t(dim), hdl(index), &out))
	return wrap(out)
}

// Gather returns t.gather(dim, index).
func (t *Tensor) Gather(dim int64, index *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(index)
	check("gather", C.at_gather(hdl(t), C.int64_t(dim), hdl(index), &out))
	return wrap(out)
}

// Scatter returns a copy of t with src written at index along dim.
func (t *Tensor) Scatter(dim int64, index, src *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(index)
	defer runtime.KeepAlive(src)
	check("scatter", C.at_scatter(hdl(t), C.int64_t(dim), hdl(index), hdl(src), &out))
	return wrap(out)
}

// ScatterAdd returns a copy of t with src added at index along dim.
func (t *Tensor) ScatterAdd(dim int64, index, src *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(index)
	defer runtime.KeepAlive(src)
	check("scatter_add", C.at_scatter_add(hdl(t), C.int64_t(dim), hdl(index), hdl(src), &out))
	return wrap(out)
}

// Index is advanced indexing t[i0, i1, ...]: each entry is an int64 index tensor or a bool mask;
// a nil entry stands for ':'.
func (t *Tensor) Index(idx ...*Tensor) *Tensor {
	defer runtime.KeepAlive(idx)
	p, n, hs := handles(idx)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("index", C.at_index(hdl(t), p, n, &out))
	_ = hs
	return wrap(out)
}

// IndexPut_ writes values at t[idx...] in place (adding when accumulate) and returns t.
func (t *Tensor) IndexPut_(idx []*Tensor, values *Tensor, accumulate bool) *Tensor {
	defer runtime.KeepAlive(idx)
	p, n, hs := handles(idx)
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(values)
	check("index_put_", C.at_index_put_(hdl(t), p, n, hdl(values), cBool(accumulate)))
	_ = hs
	return t
}

// MaskedSelect returns the elements where mask is true, as a 1-d tensor.
func (t *Tensor) MaskedSelect(mask *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(mask)
	check("masked_select", C.at_masked_select(hdl(t), hdl(mask), &out))
	return wrap(out)
}

// MaskedFill returns a copy of t with v where mask is true.
func (t *Tensor) MaskedFill(mask *Tensor, v float64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(mask)
	check("masked_fill", C.at_masked_fill(hdl(t), hdl(mask), C.double(v), &out))
	return wrap(out)
}

// MaskedFill_ writes v where mask is true, in place, and returns t.
func (t *Tensor) MaskedFill_(mask *Tensor, v float64) *Tensor {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(mask)
	check("masked_fill_", C.at_masked_fill_(hdl(t), hdl(mask), C.double(v)))
	return t
}

// Where returns a where cond is true, else b (broadcasting).
func Where(cond, a, b *Tensor) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(cond)
	defer runtime.KeepAlive(a)
	defer runtime.KeepAlive(b)
	check("where", C.at_where(hdl(cond), hdl(a), hdl(b), &out))
	return wrap(out)
}

// Nonzero returns the indices of non-zero elements, shape (n, dim).
func (t *Tensor) Nonzero() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("nonzero", C.at_nonzero(hdl(t), &out))
	return wrap(out)
}

// Tril returns the lower triangle (on and below diagonal) of the last two dimensions.
func (t *Tensor) Tril(diagonal int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("tril", C.at_tril(hdl(t), C.int64_t(diagonal), &out))
	return wrap(out)
}

// Triu returns the upper triangle (on and above diagonal) of the last two dimensions.
func (t *Tensor) Triu(diagonal int64) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("triu", C.at_triu(hdl(t), C.int64_t(diagonal), &out))
	return wrap(out)
}

// Flip reverses the order of elements along dims.
func (t *Tensor) Flip(dims ...int64) *Tensor {
	p, n := cInt64s(dims)
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("flip", C.at_flip(hdl(t), p, n, &out))
	return wrap(out)
}
