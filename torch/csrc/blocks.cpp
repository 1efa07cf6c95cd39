// blocks.cpp — fused transformer blocks (affgd_torch.h, "fused transformer blocks").
//
// Each block below is a transcription, op for op, of the Go code it replaces: the same libtorch
// functions with the same arguments in the same order, so the results are bitwise those of the
// op-by-op path (models/dino and models/clip test it). Shape facts that the Go code reads with a
// shim call are read here from the tensors. The comments name the Go call each line stands for.
// Plain ATen calls only: the blocks run on whatever device and dtype their inputs have.
#include "internal.h"

using affgd::T;
using affgd::wrap;

namespace {

// The ops each block runs, counted as the op-by-op path counts them (views included).
constexpr int64_t kViTBlockOps = 21;
constexpr int64_t kCLIPBlockOps = 21;

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

}  // namespace

extern "C" {

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
