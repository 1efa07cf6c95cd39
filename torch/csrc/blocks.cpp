// blocks.cpp — fused calls: transformer blocks and the batched K-means step (affgd_torch.h,
// "fused transformer blocks", "fused K-means step").
//
// Each function below is a transcription, op for op, of the Go code it replaces: the same libtorch
// functions with the same arguments in the same order, so the results are bitwise those of the
// op-by-op path (models/dino, models/clip and discovery test it). Shape facts that the Go code reads with a
// shim call are read here from the tensors. The comments name the Go call each line stands for.
// Plain ATen calls only: the blocks run on whatever device and dtype their inputs have.
#include "internal.h"

using affgd::T;
using affgd::wrap;

namespace {

// The ops each block runs, counted as the op-by-op path counts them (views included).
constexpr int64_t kViTBlockOps = 21;
constexpr int64_t kCLIPBlockOps = 21;
constexpr int64_t kKMeansStepOps = 25;

constexpr int kBlockWeights = 12;

// The block's weights, in affgd_torch.h's order.
struct BlockWeights {
  at::Tensor norm1_w, qkv_w, proj_w, norm2_w, fc1_w, fc2_w;
  c10::optional<at::Tensor> norm1_b, qkv_b, proj_b, norm2_b, fc1_b, fc2_b;
};

c10::optional<at::Tensor> opt(at_tensor h) {
  if (!h) return c10::nullopt;
  return T(h);
}

const at::Tensor &required(at_tensor h, const char *what) {
  TORCH_CHECK(h != nullptr, "fused block: missing ", what);
  return T(h);
}

BlockWeights weights(const at_tensor *w, int nw) {
  TORCH_CHECK(w != nullptr && nw == kBlockWeights, "fused block: expected ", kBlockWeights,
              " weight tensors, got ", nw);
  BlockWeights b;
  b.norm1_w = required(w[0], "norm1 weight");
  b.norm1_b = opt(w[1]);
  b.qkv_w = required(w[2], "q/k/v projection weight");
  b.qkv_b = opt(w[3]);
  b.proj_w = required(w[4], "output projection weight");
  b.proj_b = opt(w[5]);
  b.norm2_w = required(w[6], "norm2 weight");
  b.norm2_b = opt(w[7]);
  b.fc1_w = required(w[8], "first MLP weight");
  b.fc1_b = opt(w[9]);
  b.fc2_w = required(w[10], "second MLP weight");
  b.fc2_b = opt(w[11]);
  return b;
}

void check_input(const at::Tensor &x, int64_t heads) {
  TORCH_CHECK(x.dim() == 3, "fused block: expected tokens (B, N, C), got shape ", x.sizes());
  TORCH_CHECK(heads > 0 && x.size(2) % heads == 0, "fused block: width ", x.size(2),
              " is not a positive multiple of the head count ", heads);
}

// nn.LayerNorm.Forward: torch.LayerNorm(x, {weight.size(0)}, weight, bias, eps).
at::Tensor layer_norm(const at::Tensor &x, const at::Tensor &w, const c10::optional<at::Tensor> &b,
                      double eps) {
  int64_t shape[1] = {w.size(0)};
  return at::layer_norm(x, at::IntArrayRef(shape, 1), w, b, eps, true);
}

// models/dino Block.forward and Attention.weights.
at::Tensor vit_block(const at::Tensor &x0, const BlockWeights &w, int64_t heads, double eps1,
                     double eps2, double scale) {
  auto s = x0.sizes().vec();                                       // s := x.Shape()
  auto h = layer_norm(x0, w.norm1_w, w.norm1_b, eps1);             // b.Norm1.Forward(x)
  int64_t b = s[0], n = s[1], c = s[2];                            // weights: x.Shape()
  auto qkv = at::linear(h, w.qkv_w, w.qkv_b)                       // a.QKV.Forward(x)
                 .reshape({b, n, 3, heads, c / heads})             // .Reshape(b, n, 3, H, c/H)
                 .permute({2, 0, 3, 1, 4});                        // .Permute(2, 0, 3, 1, 4)
  auto q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
  auto att = at::matmul(q, k.transpose(-2, -1));                   // q.Matmul(k.Transpose(-2, -1))
  att = at::mul(att, affgd::scalar_for(att, scale));               // .MulScalar(headScale(c/H))
  att = at::softmax(att, -1);                                      // .Softmax(-1)
  auto y = at::matmul(att, v).transpose(1, 2).reshape({s[0], s[1], s[2]});
  y = at::linear(y, w.proj_w, w.proj_b);                           // b.Attn.Proj.Forward(...)
  auto x = at::add(x0, y);                                         // x = x.Add(y)
  auto m = layer_norm(x, w.norm2_w, w.norm2_b, eps2);              // b.Norm2.Forward(x)
  m = at::linear(m, w.fc1_w, w.fc1_b);                             // b.MLP.FC1.Forward
  m = at::gelu(m, "none");                                         // .Gelu()
  m = at::linear(m, w.fc2_w, w.fc2_b);                             // b.MLP.FC2.Forward
  return at::add(x, m);                                            // x.Add(h)
}

// models/clip Block.forward, Attention.forward/qkv/merge and quickGELU.
at::Tensor clip_block(const at::Tensor &x0, const BlockWeights &w, const c10::optional<at::Tensor> &mask,
                      int64_t heads, double eps1, double eps2) {
  auto h = layer_norm(x0, w.norm1_w, w.norm1_b, eps1);             // b.Ln1.Forward(x)
  auto s = h.sizes().vec();                                        // qkv: x.Shape()
  int64_t b = s[0], l = s[1], d = s[2];
  auto parts = at::linear(h, w.qkv_w, w.qkv_b).chunk(3, -1);       // torch.Linear(...).Chunk(3, -1)
  auto split = [&](const at::Tensor &t) { return t.reshape({b, l, heads, d / heads}).transpose(1, 2); };
  auto q = split(parts[0]), k = split(parts[1]), v = split(parts[2]);
  auto o = affgd::sdpa(q, k, v, mask, false, false, 0.0);          // ScaledDotProductAttention(q, k, v, mask, false, 0)
  auto so = o.sizes().vec();                                       // merge: o.Shape()
  o = o.transpose(1, 2).reshape({so[0], so[2], so[1] * so[3]});
  o = at::linear(o, w.proj_w, w.proj_b);                           // a.OutProj.Forward(...)
  auto x = at::add(x0, o);                                         // x = x.Add(...)
  auto m = layer_norm(x, w.norm2_w, w.norm2_b, eps2);              // b.Ln2.Forward(x)
  m = at::linear(m, w.fc1_w, w.fc1_b);                             // b.CFc.Forward
  m = at::mul(m, at::sigmoid(at::mul(m, affgd::scalar_for(m, 1.702))));  // quickGELU
  m = at::linear(m, w.fc2_w, w.fc2_b);                             // b.CProj.Forward
  return at::add(x, m);                                            // x.Add(...)
}

// discovery's kmeansBatch loop body (one Lloyd iteration for every point set at once).
std::tuple<at::Tensor, at::Tensor> kmeans_step(const at::Tensor &x, const at::Tensor &x2,
                                               const at::Tensor &xx, const at::Tensor &clusters,
                                               const at::Tensor &w, const at::Tensor &c,
                                               const at::Tensor &active, double tol) {
  int64_t d2[1] = {2}, d12[2] = {1, 2};
  auto two = [](const at::Tensor &t) { return affgd::scalar_for(t, 2); };
  auto cc = at::pow(c, two(c)).sum(at::IntArrayRef(d2, 1), false).unsqueeze(1);  // c.PowScalar(2).SumDims({2}).Unsqueeze(1)
  auto sim = at::bmm(x2, c.transpose(1, 2));                                        // x2.Bmm(c.Transpose(1, 2))
  sim = at::sub(at::sub(sim, xx), cc);                                              // .Sub(xx).Sub(cc)
  auto closest = std::get<1>(sim.max(-1, false));                                  // sim.MaxDim(-1, false)
  auto eq = at::eq(closest.unsqueeze(1), clusters);                                 // closest.Unsqueeze(1).Eq(clusters)
  auto mask = at::mul(eq.to(eq.device(), x.scalar_type()), w);                      // .ToDType(x.DType()).Mul(w)
  auto mean = at::bmm(mask, x);                                                     // mask.Bmm(x)
  mean = at::div(mean, mask.sum(at::IntArrayRef(d2, 1), false).unsqueeze(2));       // .Div(mask.SumDims({2}).Unsqueeze(2))
  mean = mean.masked_fill(at::isnan(mean), affgd::scalar_for(mean, 0));            // mean.MaskedFill(mean.IsNaN(), 0)
  auto diff = at::sub(mean, c);                                                     // mean.Sub(c)
  auto err = at::pow(diff, two(diff)).sum(at::IntArrayRef(d12, 2), true);          // .PowScalar(2).SumDims({1, 2}, true)
  auto next = at::where(active, mean, c);                                           // torch.Where(active, mean, c)
  auto le = at::le(err, affgd::scalar_for(err, tol));                               // errSq.LeScalar(tol)
  auto still = at::logical_and(active, at::logical_not(le));                        // active.LogicalAnd(....LogicalNot())
  return {next, still};
}

}  // namespace

extern "C" {

at_err at_kmeans_step(at_tensor x, at_tensor x2, at_tensor xx, at_tensor clusters, at_tensor w,
                      at_tensor c, at_tensor active, double tol, at_tensor *next, at_tensor *still) {
  AT_TRY_OPS(kKMeansStepOps, {
    auto &cx = T(c);
    TORCH_CHECK(cx.dim() == 3, "kmeans_step: expected centroids (nc, K, C), got shape ", cx.sizes());
    auto r = kmeans_step(T(x), T(x2), T(xx), T(clusters), T(w), cx, T(active), tol);
    *next = wrap(std::get<0>(r));
    *still = wrap(std::get<1>(r));
  });
}

at_err at_vit_block(at_tensor x, const at_tensor *w, int nw, at_tensor mask, int64_t heads,
                    double eps1, double eps2, double scale, at_tensor *out) {
  AT_TRY_OPS(kViTBlockOps, {
    auto &in = T(x);
    check_input(in, heads);
    TORCH_CHECK(mask == nullptr, "vit_block takes no attention mask");
    *out = wrap(vit_block(in, weights(w, nw), heads, eps1, eps2, scale));
  });
}

at_err at_clip_block(at_tensor x, const at_tensor *w, int nw, at_tensor mask, int64_t heads,
                     double eps1, double eps2, double scale, at_tensor *out) {
  AT_TRY_OPS(kCLIPBlockOps, {
    auto &in = T(x);
    check_input(in, heads);
    TORCH_CHECK(scale == 0, "clip_block uses scaled_dot_product_attention's default scale: pass 0, got ", scale);
    *out = wrap(clip_block(in, weights(w, nw), opt(mask), heads, eps1, eps2));
  });
}

}  // extern "C"
