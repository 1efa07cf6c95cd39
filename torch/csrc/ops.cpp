// ops.cpp — shape, elementwise, reduction, linear-algebra, nn and autograd calls.
#include <ATen/TensorIndexing.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "internal.h"

using affgd::T;
using affgd::wrap;

namespace {

at::IntArrayRef arr(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

std::vector<at::Tensor> tensors(const at_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

// Returns a malloc'd array of handles for a tensor list.
void wrap_list(const std::vector<at::Tensor> &v, at_tensor **outs, int *n) {
  auto *arr = static_cast<at_tensor *>(std::malloc(sizeof(at_tensor) * (v.size() ? v.size() : 1)));
  TORCH_CHECK(arr, "out of memory");
  for (size_t i = 0; i < v.size(); i++) arr[i] = wrap(v[i]);
  *outs = arr;
  *n = static_cast<int>(v.size());
}

c10::optional<at::Tensor> opt(at_tensor h) {
  if (!h) return c10::nullopt;
  return T(h);
}

}  // namespace

extern "C" {

// ---- shape ----

at_err at_reshape(at_tensor t, const int64_t *shape, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).reshape(arr(shape, nd))));
}
at_err at_view(at_tensor t, const int64_t *shape, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).view(arr(shape, nd))));
}
at_err at_permute(at_tensor t, const int64_t *dims, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).permute(arr(dims, nd))));
}
at_err at_transpose(at_tensor t, int64_t d0, int64_t d1, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).transpose(d0, d1)));
}
at_err at_flatten(at_tensor t, int64_t start, int64_t end, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).flatten(start, end)));
}
at_err at_unsqueeze(at_tensor t, int64_t dim, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).unsqueeze(dim)));
}
at_err at_squeeze(at_tensor t, int has_dim, int64_t dim, at_tensor *out) {
  AT_TRY(*out = wrap(has_dim ? T(t).squeeze(dim) : T(t).squeeze()));
}
at_err at_expand(at_tensor t, const int64_t *shape, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).expand(arr(shape, nd))));
}
at_err at_repeat(at_tensor t, const int64_t *reps, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).repeat(arr(reps, nd))));
}
at_err at_repeat_interleave(at_tensor t, int64_t repeats, int has_dim, int64_t dim, at_tensor *out) {
  AT_TRY({
    c10::optional<int64_t> d;
    if (has_dim) d = dim;
    *out = wrap(T(t).repeat_interleave(repeats, d));
  });
}
at_err at_cat(const at_tensor *ts, int n, int64_t dim, at_tensor *out) {
  AT_TRY(*out = wrap(at::cat(tensors(ts, n), dim)));
}
at_err at_stack(const at_tensor *ts, int n, int64_t dim, at_tensor *out) {
  AT_TRY(*out = wrap(at::stack(tensors(ts, n), dim)));
}
at_err at_chunk(at_tensor t, int64_t chunks, int64_t dim, at_tensor **outs, int *n) {
  AT_TRY(wrap_list(T(t).chunk(chunks, dim), outs, n));
}
at_err at_split(at_tensor t, int64_t size, int64_t dim, at_tensor **outs, int *n) {
  AT_TRY(wrap_list(T(t).split(size, dim), outs, n));
}
at_err at_narrow(at_tensor t, int64_t dim, int64_t start, int64_t length, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).narrow(dim, start, length)));
}
at_err at_slice(at_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).slice(dim, start, end, step)));
}
at_err at_select(at_tensor t, int64_t dim, int64_t index, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).select(dim, index)));
}
at_err at_index_select(at_tensor t, int64_t dim, at_tensor index, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).index_select(dim, T(index))));
}
at_err at_gather(at_tensor t, int64_t dim, at_tensor index, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).gather(dim, T(index))));
}
at_err at_scatter(at_tensor t, int64_t dim, at_tensor index, at_tensor src, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).scatter(dim, T(index), T(src))));
}
at_err at_scatter_add(at_tensor t, int64_t dim, at_tensor index, at_tensor src, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).scatter_add(dim, T(index), T(src))));
}

// A boolean (mask) index makes the output size depend on the mask's values: the host reads them.
static std::vector<at::indexing::TensorIndex> indices(const at_tensor *idx, int n) {
  std::vector<at::indexing::TensorIndex> v;
  v.reserve(n);
  bool mask = false;
  for (int i = 0; i < n; i++) {
    if (idx[i] == nullptr) {
      v.emplace_back(at::indexing::Slice());
    } else {
      auto &ix = T(idx[i]);
      mask = mask || ix.scalar_type() == at::kBool || ix.scalar_type() == at::kByte;
      v.emplace_back(ix);
    }
  }
  if (mask) affgd::count_read();
  return v;
}

at_err at_index(at_tensor t, const at_tensor *idx, int n, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).index(indices(idx, n))));
}
at_err at_index_put_(at_tensor t, const at_tensor *idx, int n, at_tensor values, int accumulate) {
  AT_TRY({
    if (accumulate) {
      c10::List<c10::optional<at::Tensor>> l;
      bool mask = false;
      for (int i = 0; i < n; i++) mask = mask || (idx[i] && T(idx[i]).scalar_type() == at::kBool);
      if (mask) affgd::count_read();
      for (int i = 0; i < n; i++) l.push_back(idx[i] ? c10::optional<at::Tensor>(T(idx[i])) : c10::nullopt);
      at::Tensor x = T(t);
      x.index_put_(l, T(values), true);
    } else {
      auto ix = indices(idx, n);
      at::Tensor x = T(t);
      x.index_put_(ix, T(values));
    }
  });
}
at_err at_masked_select(at_tensor t, at_tensor mask, at_tensor *out) {
  AT_TRY(affgd::count_read(); *out = wrap(T(t).masked_select(T(mask))));
}
at_err at_masked_fill(at_tensor t, at_tensor mask, double value, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).masked_fill(T(mask), affgd::scalar_for(T(t), value))));
}
at_err at_masked_fill_(at_tensor t, at_tensor mask, double value) {
  AT_TRY(T(t).masked_fill_(T(mask), affgd::scalar_for(T(t), value)));
}
at_err at_where(at_tensor cond, at_tensor a, at_tensor b, at_tensor *out) {
  AT_TRY(*out = wrap(at::where(T(cond), T(a), T(b))));
}
at_err at_nonzero(at_tensor t, at_tensor *out) { AT_TRY(affgd::count_read(); *out = wrap(T(t).nonzero())); }
at_err at_tril(at_tensor t, int64_t diagonal, at_tensor *out) { AT_TRY(*out = wrap(T(t).tril(diagonal))); }
at_err at_triu(at_tensor t, int64_t diagonal, at_tensor *out) { AT_TRY(*out = wrap(T(t).triu(diagonal))); }
at_err at_flip(at_tensor t, const int64_t *dims, int nd, at_tensor *out) {
  AT_TRY(*out = wrap(T(t).flip(arr(dims, nd))));
}

// ---- elementwise ----

#define AT_DEFINE_UNARY(name) \
  at_err at_##name(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(at::name(T(t)))); }
AT_UNARY_OPS(AT_DEFINE_UNARY)
#undef AT_DEFINE_UNARY

#define AT_DEFINE_UNARY_(name) \
  at_err at_##name(at_tensor t) { AT_TRY(T(t).name()); }
AT_UNARY_INPLACE_OPS(AT_DEFINE_UNARY_)
#undef AT_DEFINE_UNARY_

#define AT_DEFINE_BINARY(name) \
  at_err at_##name(at_tensor a, at_tensor b, at_tensor *out) { AT_TRY(*out = wrap(at::name(T(a), T(b)))); }
AT_BINARY_OPS(AT_DEFINE_BINARY)
#undef AT_DEFINE_BINARY

#define AT_DEFINE_BINARY_(name) \
  at_err at_##name(at_tensor a, at_tensor b) { AT_TRY(T(a).name(T(b))); }
AT_BINARY_INPLACE_OPS(AT_DEFINE_BINARY_)
#undef AT_DEFINE_BINARY_

#define AT_DEFINE_SCALAR(name, expr)                     \
  at_err at_##name(at_tensor a, double s, at_tensor *out) { \
    AT_TRY({                                             \
      auto &x = T(a);                                    \
      auto v = affgd::scalar_for(x, s);                  \
      *out = wrap(expr);                                 \
    });                                                  \
  }
AT_DEFINE_SCALAR(add_scalar, at::add(x, v))
AT_DEFINE_SCALAR(sub_scalar, at::sub(x, v))
AT_DEFINE_SCALAR(mul_scalar, at::mul(x, v))
AT_DEFINE_SCALAR(div_scalar, at::div(x, v))
AT_DEFINE_SCALAR(pow_scalar, at::pow(x, v))
AT_DEFINE_SCALAR(rsub_scalar, at::rsub(x, v))
AT_DEFINE_SCALAR(eq_scalar, at::eq(x, v))
AT_DEFINE_SCALAR(ne_scalar, at::ne(x, v))
AT_DEFINE_SCALAR(gt_scalar, at::gt(x, v))
AT_DEFINE_SCALAR(ge_scalar, at::ge(x, v))
AT_DEFINE_SCALAR(lt_scalar, at::lt(x, v))
AT_DEFINE_SCALAR(le_scalar, at::le(x, v))
AT_DEFINE_SCALAR(clamp_min, at::clamp_min(x, v))
AT_DEFINE_SCALAR(clamp_max, at::clamp_max(x, v))
AT_DEFINE_SCALAR(remainder_scalar, at::remainder(x, v))
AT_DEFINE_SCALAR(fmod_scalar, at::fmod(x, v))
#undef AT_DEFINE_SCALAR

#define AT_DEFINE_SCALAR_(name, expr)          \
  at_err at_##name(at_tensor a, double s) {    \
    AT_TRY({                                   \
      auto &x = T(a);                          \
      auto v = affgd::scalar_for(x, s);        \
      expr;                                    \
    });                                        \
  }
AT_DEFINE_SCALAR_(add_scalar_, x.add_(v))
AT_DEFINE_SCALAR_(mul_scalar_, x.mul_(v))
AT_DEFINE_SCALAR_(fill_, x.fill_(v))
AT_DEFINE_SCALAR_(clamp_min_, x.clamp_min_(v))
AT_DEFINE_SCALAR_(clamp_max_, x.clamp_max_(v))
#undef AT_DEFINE_SCALAR_

at_err at_add_alpha(at_tensor a, at_tensor b, double alpha, at_tensor *out) {
  AT_TRY(*out = wrap(at::add(T(a), T(b), affgd::scalar_for(T(a), alpha))));
}
at_err at_add_alpha_(at_tensor a, at_tensor b, double alpha) {
  AT_TRY(T(a).add_(T(b), affgd::scalar_for(T(a), alpha)));
}

static c10::optional<at::Scalar> opt_scalar(const at::Tensor &x, int has, double v) {
  if (!has) return c10::nullopt;
  return affgd::scalar_for(x, v);
}
at_err at_clamp(at_tensor t, int has_min, double min, int has_max, double max, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    *out = wrap(at::clamp(x, opt_scalar(x, has_min, min), opt_scalar(x, has_max, max)));
  });
}
at_err at_clamp_(at_tensor t, int has_min, double min, int has_max, double max) {
  AT_TRY({
    auto &x = T(t);
    x.clamp_(opt_scalar(x, has_min, min), opt_scalar(x, has_max, max));
  });
}
at_err at_gelu(at_tensor t, int tanh_approx, at_tensor *out) {
  AT_TRY(*out = wrap(at::gelu(T(t), tanh_approx ? "tanh" : "none")));
}
at_err at_softmax(at_tensor t, int64_t dim, at_tensor *out) { AT_TRY(*out = wrap(at::softmax(T(t), dim))); }
at_err at_log_softmax(at_tensor t, int64_t dim, at_tensor *out) {
  AT_TRY(*out = wrap(at::log_softmax(T(t), dim)));
}

// ---- reductions ----

at_err at_sum(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out) {
  AT_TRY(*out = wrap(nd == 0 ? T(t).sum() : T(t).sum(arr(dims, nd), keepdim != 0)));
}
at_err at_mean(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out) {
  AT_TRY(*out = wrap(nd == 0 ? T(t).mean() : T(t).mean(arr(dims, nd), keepdim != 0)));
}
at_err at_logsumexp(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    std::vector<int64_t> all;
    if (nd == 0)
      for (int64_t i = 0; i < x.dim(); i++) all.push_back(i);
    *out = wrap(at::logsumexp(x, nd == 0 ? at::IntArrayRef(all) : arr(dims, nd), keepdim != 0));
  });
}
at_err at_std(at_tensor t, const int64_t *dims, int nd, int unbiased, int keepdim, at_tensor *out) {
  AT_TRY(*out = wrap(nd == 0 ? at::std(T(t), unbiased != 0)
                             : at::std(T(t), arr(dims, nd), unbiased != 0, keepdim != 0)));
}
at_err at_var(at_tensor t, const int64_t *dims, int nd, int unbiased, int keepdim, at_tensor *out) {
  AT_TRY(*out = wrap(nd == 0 ? at::var(T(t), unbiased != 0)
                             : at::var(T(t), arr(dims, nd), unbiased != 0, keepdim != 0)));
}
at_err at_norm(at_tensor t, double p, const int64_t *dims, int nd, int keepdim, at_tensor *out) {
  // torch.norm / Tensor.norm with a numeric p route to linalg.vector_norm in PyTorch 2.x.
  AT_TRY({
    c10::optional<at::IntArrayRef> d;
    if (nd > 0) d = arr(dims, nd);
    *out = wrap(at::linalg_vector_norm(T(t), p, d, keepdim != 0, c10::nullopt));
  });
}
at_err at_prod(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out) {
  AT_TRY(*out = wrap(has_dim ? T(t).prod(dim, keepdim != 0) : T(t).prod()));
}
at_err at_max_all(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).max())); }
at_err at_min_all(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).min())); }
at_err at_max_dim(at_tensor t, int64_t dim, int keepdim, at_tensor *values, at_tensor *indices) {
  AT_TRY({
    auto r = T(t).max(dim, keepdim != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  });
}
at_err at_min_dim(at_tensor t, int64_t dim, int keepdim, at_tensor *values, at_tensor *indices) {
  AT_TRY({
    auto r = T(t).min(dim, keepdim != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  });
}
at_err at_argmax(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out) {
  AT_TRY({
    c10::optional<int64_t> d;
    if (has_dim) d = dim;
    *out = wrap(T(t).argmax(d, keepdim != 0));
  });
}
at_err at_argmin(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out) {
  AT_TRY({
    c10::optional<int64_t> d;
    if (has_dim) d = dim;
    *out = wrap(T(t).argmin(d, keepdim != 0));
  });
}
at_err at_any(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).any())); }
at_err at_all(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).all())); }
at_err at_cumsum(at_tensor t, int64_t dim, at_tensor *out) { AT_TRY(*out = wrap(T(t).cumsum(dim))); }
at_err at_topk(at_tensor t, int64_t k, int64_t dim, int largest, int sorted, at_tensor *values,
               at_tensor *indices) {
  AT_TRY({
    auto r = T(t).topk(k, dim, largest != 0, sorted != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  });
}
at_err at_sort(at_tensor t, int64_t dim, int descending, int stable, at_tensor *values,
               at_tensor *indices) {
  AT_TRY({
    auto r = T(t).sort(c10::optional<bool>(stable != 0), dim, descending != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  });
}
at_err at_unique(at_tensor t, int sorted, int return_inverse, int return_counts, at_tensor *values,
                 at_tensor *inverse, at_tensor *counts) {
  AT_TRY({
    affgd::count_read();
    auto r = at::_unique2(T(t), sorted != 0, return_inverse != 0, return_counts != 0);
    *values = wrap(std::get<0>(r));
    *inverse = return_inverse ? wrap(std::get<1>(r)) : nullptr;
    *counts = return_counts ? wrap(std::get<2>(r)) : nullptr;
  });
}

// ---- linear algebra ----

at_err at_einsum(const char *equation, const at_tensor *ts, int n, at_tensor *out) {
  AT_TRY(*out = wrap(at::einsum(equation, tensors(ts, n))));
}
at_err at_cdist(at_tensor a, at_tensor b, double p, at_tensor *out) {
  AT_TRY(*out = wrap(at::cdist(T(a), T(b), p)));
}
at_err at_normalize(at_tensor t, double p, int64_t dim, double eps, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    int64_t d = dim;
    auto denom = at::linalg_vector_norm(x, p, at::IntArrayRef(&d, 1), true, c10::nullopt)
                     .clamp_min(eps)
                     .expand_as(x);
    *out = wrap(x / denom);
  });
}

// ---- nn ----

at_err at_linear(at_tensor x, at_tensor w, at_tensor b, at_tensor *out) {
  AT_TRY(*out = wrap(at::linear(T(x), T(w), opt(b))));
}
at_err at_conv2d(at_tensor x, at_tensor w, at_tensor b, const int64_t *stride,
                 const int64_t *padding, const int64_t *dilation, int64_t groups, at_tensor *out) {
  AT_TRY({
    auto &in = T(x);
    TORCH_CHECK(in.dim() == 4, "conv2d expects a 4-d input (N, C, H, W), got shape ", in.sizes());
    *out = wrap(at::conv2d(in, T(w), opt(b), arr(stride, 2), arr(padding, 2), arr(dilation, 2), groups));
  });
}
at_err at_batch_norm(at_tensor x, at_tensor w, at_tensor b, at_tensor running_mean,
                     at_tensor running_var, int training, double momentum, double eps,
                     at_tensor *out) {
  AT_TRY({
    auto &in = T(x);
    if (training) {
      // F.batch_norm checks this in Python (_verify_batch_size); at::batch_norm does not, and
      // with one value per channel it returns garbage and makes the running variance NaN.
      int64_t n = in.dim() > 0 ? in.size(0) : 1;
      for (int64_t i = 2; i < in.dim(); i++) n *= in.size(i);
      TORCH_CHECK(n != 1, "Expected more than 1 value per channel when training, got input size ",
                  in.sizes());
    }
    *out = wrap(at::batch_norm(in, opt(w), opt(b), opt(running_mean), opt(running_var),
                               training != 0, momentum, eps, true));
  });
}
at_err at_layer_norm(at_tensor x, const int64_t *shape, int nd, at_tensor w, at_tensor b,
                     double eps, at_tensor *out) {
  AT_TRY(*out = wrap(at::layer_norm(T(x), arr(shape, nd), opt(w), opt(b), eps, true)));
}
at_err at_avg_pool2d(at_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int ceil_mode, int count_include_pad,
                     int64_t divisor_override, at_tensor *out) {
  AT_TRY({
    c10::optional<int64_t> div;
    if (divisor_override) div = divisor_override;
    *out = wrap(at::avg_pool2d(T(x), arr(kernel, 2), arr(stride, 2), arr(padding, 2), ceil_mode != 0,
                               count_include_pad != 0, div));
  });
}
at_err at_adaptive_avg_pool2d(at_tensor x, int64_t oh, int64_t ow, at_tensor *out) {
  AT_TRY({
    int64_t s[2] = {oh, ow};
    *out = wrap(at::adaptive_avg_pool2d(T(x), arr(s, 2)));
  });
}
at_err at_max_pool2d(at_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int ceil_mode, at_tensor *out) {
  AT_TRY({
    int64_t dil[2] = {1, 1};
    *out = wrap(at::max_pool2d(T(x), arr(kernel, 2), arr(stride, 2), arr(padding, 2), arr(dil, 2),
                               ceil_mode != 0));
  });
}
at_err at_interpolate(at_tensor x, int mode, int64_t out_h, int64_t out_w, int has_scales,
                      double scale_h, double scale_w, int align_corners, int antialias,
                      at_tensor *out) {
  AT_TRY({
    auto &in = T(x);
    TORCH_CHECK(in.dim() == 4, "interpolate expects a 4-d input (N, C, H, W), got shape ", in.sizes());
    TORCH_CHECK(out_h > 0 && out_w > 0, "interpolate output size must be positive, got ", out_h, "x", out_w);
    int64_t size[2] = {out_h, out_w};
    c10::optional<double> sh, sw;
    if (has_scales) {
      sh = scale_h;
      sw = scale_w;
    }
    switch (mode) {
      case 0:
        TORCH_CHECK(!antialias && !align_corners, "nearest interpolation takes neither antialias nor align_corners");
        *out = wrap(at::upsample_nearest2d(in, arr(size, 2), sh, sw));
        break;
      case 1:
        *out = wrap(antialias ? at::_upsample_bilinear2d_aa(in, arr(size, 2), align_corners != 0, sh, sw)
                              : at::upsample_bilinear2d(in, arr(size, 2), align_corners != 0, sh, sw));
        break;
      case 2:
        *out = wrap(antialias ? at::_upsample_bicubic2d_aa(in, arr(size, 2), align_corners != 0, sh, sw)
                              : at::upsample_bicubic2d(in, arr(size, 2), align_corners != 0, sh, sw));
        break;
      default:
        TORCH_CHECK(false, "unknown interpolation mode ", mode);
    }
  });
}
at_err at_cross_entropy(at_tensor logits, at_tensor target, at_tensor weight, int reduction,
                        int64_t ignore_index, double label_smoothing, at_tensor *out) {
  AT_TRY({
    TORCH_CHECK(reduction >= 0 && reduction <= 2, "unknown reduction ", reduction);
    *out = wrap(at::cross_entropy_loss(T(logits), T(target), opt(weight), reduction, ignore_index,
                                       label_smoothing));
  });
}

// at::scaled_dot_product_attention has taken `scale` since libtorch 2.1 (2.0 had the op without
// it; 1.13, Debian's, has neither): older ones compute the math below, as PyTorch's own math
// backend does (both factors scaled by sqrt(scale) before the product).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define AFFGD_HAS_SDPA 1
#else
#define AFFGD_HAS_SDPA 0
#endif
}  // extern "C"

// The attention of at_scaled_dot_product_attention, shared with the fused blocks (blocks.cpp).
at::Tensor affgd::sdpa(const at::Tensor &query, const at::Tensor &key, const at::Tensor &value,
                       const c10::optional<at::Tensor> &attn_mask, bool is_causal, bool has_scale,
                       double scale) {
  TORCH_CHECK(query.dim() >= 2 && key.dim() >= 2 && value.dim() >= 2,
              "scaled_dot_product_attention expects q, k and v of at least 2 dimensions, got ",
              query.sizes(), ", ", key.sizes(), ", ", value.sizes());
  TORCH_CHECK(!(is_causal && attn_mask), "scaled_dot_product_attention: give either a mask or is_causal, not both");
#if AFFGD_HAS_SDPA
  c10::optional<double> s;
  if (has_scale) s = scale;
  return at::scaled_dot_product_attention(query, key, value, attn_mask, 0.0, is_causal, s);
#else
  double sc = has_scale ? scale : 1.0 / std::sqrt(static_cast<double>(query.size(-1)));
  double f = std::sqrt(std::abs(sc));
  auto att = at::matmul(query * (sc < 0 ? -f : f), key.transpose(-2, -1) * f);
  c10::optional<at::Tensor> mask = attn_mask;
  if (is_causal) mask = at::ones({query.size(-2), key.size(-2)}, query.options().dtype(at::kBool)).tril();
  if (mask && mask->scalar_type() == at::kBool) {
    mask = at::zeros_like(*mask, query.options()).masked_fill_(mask->logical_not(),
                                                                -std::numeric_limits<double>::infinity());
  }
  if (mask) att = att + *mask;
  return at::matmul(at::softmax(att, -1), value);
#endif
}

extern "C" {

at_err at_scaled_dot_product_attention(at_tensor q, at_tensor k, at_tensor v, at_tensor attn_mask,
                                       int is_causal, int has_scale, double scale, at_tensor *out) {
  AT_TRY(*out = wrap(affgd::sdpa(T(q), T(k), T(v), opt(attn_mask), is_causal != 0, has_scale != 0, scale)));
}

// ---- autograd ----

at_err at_set_requires_grad(at_tensor t, int requires) { AT_TRY(T(t).requires_grad_(requires != 0)); }
at_err at_backward(at_tensor t, at_tensor grad, int retain_graph) {
  AT_TRY({
    auto &x = T(t);
    if (!grad) TORCH_CHECK(x.numel() == 1, "backward without a gradient needs a scalar, got shape ", x.sizes());
    x.backward(grad ? T(grad) : at::Tensor(), retain_graph != 0 ? c10::optional<bool>(true) : c10::nullopt);
  });
}
at_err at_grad(at_tensor t, at_tensor *out) {
  AT_TRY({
    auto g = T(t).grad();
    *out = g.defined() ? wrap(g) : nullptr;
  });
}
at_err at_set_grad(at_tensor t, at_tensor grad) {
  AT_TRY(T(t).mutable_grad() = grad ? T(grad) : at::Tensor());
}
at_err at_zero_grad(at_tensor t) { AT_TRY(T(t).mutable_grad() = at::Tensor()); }
at_err at_is_leaf(at_tensor t, int *out) { AT_TRY_FACT(*out = T(t).is_leaf() ? 1 : 0); }

}  // extern "C"
