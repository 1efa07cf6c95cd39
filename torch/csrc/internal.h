// internal.h — helpers shared by the shim's translation units (not part of the C API).
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "affgd_torch.h"

// One handle: a tensor plus the bookkeeping that lets a scope free its storage while the owner
// (Go) still holds the handle. refs counts the owner and, while it is registered, the scope.
struct at_box {
  at::Tensor t;
  int64_t bytes = 0;
  std::atomic<bool> released{false};
  std::atomic<int> refs{1};
  bool kept = false;     // touched only on the thread whose scope holds the box
  bool escaped = false;  // kept, and not handed to the parent scope either
  std::atomic<uint64_t> scope{0};  // id of the scope holding the box; 0: none (at_scope_keep checks it)
};

struct at_gen_box {
  at::Generator g;
};

namespace affgd {

// Wraps a tensor in a new handle, registered in the calling thread's innermost scope if any.
at_tensor wrap(at::Tensor t);
// The tensor of a handle; throws a clear error for NULL or released handles.
const at::Tensor &T(at_tensor h);
at::ScalarType to_scalar_type(int code);
int from_scalar_type(at::ScalarType s);
at::Device to_device(int code);
int from_device(const at::Device &d);
at::TensorOptions options(int dtype, int device);
char *dup_string(const std::string &s);
// A scalar that keeps integral values integral on integral tensors, as Python does.
at::Scalar scalar_for(const at::Tensor &t, double v);

// The counters of affgd_torch.h ("counters"), bumped with relaxed atomics.
extern std::atomic<int64_t> g_counters[AT_NUM_COUNTERS];
inline void count(int which, int64_t n = 1) { g_counters[which].fetch_add(n, std::memory_order_relaxed); }
// A device-to-host read of x's values.
inline void count_read() { count(AT_COUNTER_reads); }

// at::scaled_dot_product_attention (ops.cpp; on libtorch < 2.1 the math it stands for).
at::Tensor sdpa(const at::Tensor &query, const at::Tensor &key, const at::Tensor &value,
                const c10::optional<at::Tensor> &attn_mask, bool is_causal, bool has_scale,
                double scale);

}  // namespace affgd

// Runs body and turns every C++ exception into an at_err; counts one call that launches tensor
// work (AT_TRY_FACT: one that only reads a handle's metadata).
#define AT_TRY(...)                       \
  affgd::count(AT_COUNTER_calls);         \
  affgd::count(AT_COUNTER_ops);           \
  AT_TRY_BODY(__VA_ARGS__)
// One call that runs n libtorch ops (a fused call, blocks.cpp): "ops launched" counts them all.
#define AT_TRY_OPS(n, ...)                \
  affgd::count(AT_COUNTER_calls);         \
  affgd::count(AT_COUNTER_ops, (n));      \
  AT_TRY_BODY(__VA_ARGS__)
#define AT_TRY_FACT(...)                  \
  affgd::count(AT_COUNTER_calls);         \
  AT_TRY_BODY(__VA_ARGS__)
#define AT_TRY_BODY(...)                                                \
  try {                                                                  \
    __VA_ARGS__;                                                         \
    return nullptr;                                                      \
  } catch (const c10::Error &e) {                                        \
    return affgd::dup_string(e.what_without_backtrace());                \
  } catch (const std::exception &e) {                                    \
    return affgd::dup_string(e.what());                                  \
  } catch (...) {                                                        \
    return affgd::dup_string("unknown C++ exception in the torch shim"); \
  }
