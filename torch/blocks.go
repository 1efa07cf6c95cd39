package torch

/*
#include "affgd_torch.h"

typedef at_err (*at_block_fn)(at_tensor, const at_tensor *, int, at_tensor, int64_t, double, double,
                              double, at_tensor *);

static at_err call_block(at_block_fn f, at_tensor x, const at_tensor *w, int nw, at_tensor mask,
                         int64_t heads, double eps1, double eps2, double scale, at_tensor *out) {
  return f(x, w, nw, mask, heads, eps1, eps2, scale, out);
}
*/
import "C"

import "runtime"

// BlockWeights are the tensors of one pre-norm transformer block for [ViTBlock] and
// [CLIPBlock]: two LayerNorms (weights required, biases optional), the packed q/k/v projection
// (3C, C), the attention's output projection and the MLP's two linears (nil biases: none).
type BlockWeights struct {
	Norm1W, Norm1B *Tensor
	QKVW, QKVB     *Tensor
	ProjW, ProjB   *Tensor
	Norm2W, Norm2B *Tensor
	FC1W, FC1B     *Tensor
	FC2W, FC2B     *Tensor
	Eps1, Eps2     float64 // norm1's and norm2's epsilon
	Heads          int64
}

// list is the weights in the shim's order (affgd_torch.h, "fused transformer blocks").
func (w *BlockWeights) list() []*Tensor {
	return []*Tensor{w.Norm1W, w.Norm1B, w.QKVW, w.QKVB, w.ProjW, w.ProjB,
		w.Norm2W, w.Norm2B, w.FC1W, w.FC1B, w.FC2W, w.FC2B}
}

// ViTBlock runs DINO's pre-norm block on x (B, N, C) in one shim call: x + proj(attention of
// norm1(x)), softmax(q·kᵀ·scale)·v per head, then + fc2(GELU(fc1(norm2(x)))) with exact GELU.
// The libtorch ops are those of models/dino's op-by-op block, in its order, so the result is
// bitwise the same; the ops counter counts each of them.
func ViTBlock(x *Tensor, w *BlockWeights, scale float64) *Tensor {
	return fusedBlock("vit_block", C.at_block_fn(C.at_vit_block), x, nil, w, scale)
}

// CLIPBlock runs open_clip's ResidualAttentionBlock on x (B, N, C) in one shim call:
// x + out_proj(scaled_dot_product_attention(q, k, v, mask)) of ln_1(x) with the default scale,
// then + c_proj(QuickGELU(c_fc(ln_2(x)))). mask is additive, broadcast to (B, heads, N, N), or
// nil. The libtorch ops are those of models/clip's op-by-op block, in its order, so the result
// is bitwise the same; the ops counter counts each of them.
func CLIPBlock(x, mask *Tensor, w *BlockWeights) *Tensor {
	return fusedBlock("clip_block", C.at_block_fn(C.at_clip_block), x, mask, w, 0)
}

// fusedBlock calls one of the shim's fused blocks (AT_BLOCK_OPS).
func fusedBlock(name string, f C.at_block_fn, x, mask *Tensor, w *BlockWeights, scale float64) *Tensor {
	if w == nil {
		Fail(name, "nil block weights")
	}
	ws := w.list()
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(mask)
	defer runtime.KeepAlive(ws)
	p, n, hs := handles(ws)
	var out C.at_tensor
	check(name, C.call_block(f, hdl(x), p, n, hdl(mask), C.int64_t(w.Heads), C.double(w.Eps1), C.double(w.Eps2),
		C.double(scale), &out))
	_ = hs
	return wrap(out)
}

// KMeansStep is one iteration of discovery's batched Lloyd loop in one shim call, with the
// libtorch ops of its op-by-op body in their order (bitwise the same; the ops counter counts
// each of them): for nc point sets x (nc, N, C), with x2 = 2·x, xx (nc, N, 1) the squared norms,
// clusters (1, K, 1) int64 0..K−1, w (nc, 1, N) the points' 0/1 weights, centroids c (nc, K, C)
// and active (nc, 1, 1) bool, it returns the next centroids (the means of each cluster's points,
// an empty cluster's 0/0 turned into 0; c itself for a set not active) and which sets are still
// active (active, and Σ(mean − c)² > tol).
func KMeansStep(x, x2, xx, clusters, w, c, active *Tensor, tol float64) (next, still *Tensor) {
	var n, s C.at_tensor
	defer runtime.KeepAlive(x)
	defer runtime.KeepAlive(x2)
	defer runtime.KeepAlive(xx)
	defer runtime.KeepAlive(clusters)
	defer runtime.KeepAlive(w)
	defer runtime.KeepAlive(c)
	defer runtime.KeepAlive(active)
	check("kmeans_step", C.at_kmeans_step(hdl(x), hdl(x2), hdl(xx), hdl(clusters), hdl(w), hdl(c), hdl(active),
		C.double(tol), &n, &s))
	return wrap(n), wrap(s)
}
