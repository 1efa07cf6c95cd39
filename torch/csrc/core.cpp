// core.cpp — handles, scopes, errors, library facts, creation, random numbers, conversion.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>
#if __has_include(<c10/core/CachingDeviceAllocator.h>)
#include <c10/core/CachingDeviceAllocator.h>
#define AFFGD_HAS_DEVICE_ALLOCATOR 1
#endif

#include <cmath>
#include <cstdlib>

#include "internal.h"

namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_bytes{0};

// The scopes open on this OS thread, innermost last.
thread_local std::vector<std::vector<at_box *>> t_scopes;
// Their ids (parallel to t_scopes): unique over the process, so a handle knows which scope holds it.
thread_local std::vector<uint64_t> t_scope_ids;
std::atomic<uint64_t> g_next_scope{1};

void unref(at_box *b) {
  if (b->refs.fetch_sub(1) == 1) delete b;
}

}  // namespace

namespace affgd {

std::atomic<int64_t> g_counters[AT_NUM_COUNTERS];

char *dup_string(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

at_tensor wrap(at::Tensor t) {
  auto *b = new at_box();
  if (t.defined() && t.has_storage()) b->bytes = static_cast<int64_t>(t.storage().nbytes());
  b->t = std::move(t);
  g_live.fetch_add(1);
  g_bytes.fetch_add(b->bytes);
  if (!t_scopes.empty()) {
    b->refs.store(2);
    t_scopes.back().push_back(b);
    b->scope.store(t_scope_ids.back());
  }
  return b;
}

const at::Tensor &T(at_tensor h) {
  TORCH_CHECK(h != nullptr, "nil tensor");
  TORCH_CHECK(!h->released.load(),
              "tensor used after it was released (freed explicitly, or its scope was closed)");
  return h->t;
}

at::ScalarType to_scalar_type(int code) {
  switch (code) {
    case AT_FLOAT32: return at::kFloat;
    case AT_FLOAT64: return at::kDouble;
    case AT_FLOAT16: return at::kHalf;
    case AT_BFLOAT16: return at::kBFloat16;
    case AT_INT64: return at::kLong;
    case AT_INT32: return at::kInt;
    case AT_INT16: return at::kShort;
    case AT_INT8: return at::kChar;
    case AT_UINT8: return at::kByte;
    case AT_BOOL: return at::kBool;
  }
  TORCH_CHECK(false, "unknown dtype code ", code);
}

int from_scalar_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return AT_FLOAT32;
    case at::kDouble: return AT_FLOAT64;
    case at::kHalf: return AT_FLOAT16;
    case at::kBFloat16: return AT_BFLOAT16;
    case at::kLong: return AT_INT64;
    case at::kInt: return AT_INT32;
    case at::kShort: return AT_INT16;
    case at::kChar: return AT_INT8;
    case at::kByte: return AT_UINT8;
    case at::kBool: return AT_BOOL;
    default: break;
  }
  TORCH_CHECK(false, "dtype ", s, " is not supported by affgd");
}

at::Device to_device(int code) {
  if (code < 0) return at::Device(at::kCPU);
  TORCH_CHECK(at::detail::getCUDAHooks().hasCUDA(), "CUDA device cuda:", code,
              " requested, but CUDA is not available (no GPU, no driver, or a CPU-only libtorch)");
  int n = at::detail::getCUDAHooks().getNumGPUs();
  TORCH_CHECK(code < n, "CUDA device cuda:", code, " requested, but only ", n,
              " device(s) are present");
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(code));
}

int from_device(const at::Device &d) {
  if (d.is_cpu()) return -1;
  TORCH_CHECK(d.is_cuda(), "device ", d, " is not supported by affgd");
  return d.index() < 0 ? 0 : d.index();
}

at::TensorOptions options(int dtype, int device) {
  return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(device));
}

at::Scalar scalar_for(const at::Tensor &t, double v) {
  if (at::isIntegralType(t.scalar_type(), /*includeBool=*/false) && std::trunc(v) == v &&
      std::fabs(v) < 9.2e18)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

}  // namespace affgd

using affgd::T;
using affgd::wrap;

extern "C" {

int at_abi_version(void) { return AT_ABI_VERSION; }
void at_free_string(char *s) { std::free(s); }
void at_free(void *p) { std::free(p); }
const char *at_torch_version(void) { return TORCH_VERSION; }

at_err at_set_num_threads(int n) {
  AT_TRY(TORCH_CHECK(n > 0, "thread count must be positive, got ", n); at::set_num_threads(n));
}
int at_get_num_threads(void) { return at::get_num_threads(); }

int at_cuda_is_available(void) {
  try {
    return at::detail::getCUDAHooks().hasCUDA() && at::detail::getCUDAHooks().getNumGPUs() > 0;
  } catch (...) {
    return 0;
  }
}
int at_cuda_device_count(void) {
  try {
    if (!at::detail::getCUDAHooks().hasCUDA()) return 0;
    return at::detail::getCUDAHooks().getNumGPUs();
  } catch (...) {
    return 0;
  }
}
at_err at_cuda_synchronize(int device) {
  AT_TRY(affgd::to_device(device); at::detail::getCUDAHooks().deviceSynchronize(device));
}

at_err at_manual_seed(uint64_t seed) {
  AT_TRY({
    auto g = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_current_seed(seed);
    }
    if (at_cuda_is_available()) {
      int n = at::detail::getCUDAHooks().getNumGPUs();
      for (int i = 0; i < n; i++) {
        auto cg = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
        std::lock_guard<std::mutex> lock(cg.mutex());
        cg.set_current_seed(seed);
      }
    }
  });
}

void at_set_allow_tf32(int cublas, int cudnn) {
  at::globalContext().setAllowTF32CuBLAS(cublas != 0);
  at::globalContext().setAllowTF32CuDNN(cudnn != 0);
}
void at_get_allow_tf32(int *cublas, int *cudnn) {
  *cublas = at::globalContext().allowTF32CuBLAS() ? 1 : 0;
  *cudnn = at::globalContext().allowTF32CuDNN() ? 1 : 0;
}

// ---- counters ----

void at_counters(int64_t *out, int n) {
  for (int i = 0; i < n && i < AT_NUM_COUNTERS; i++)
    out[i] = affgd::g_counters[i].load(std::memory_order_relaxed);
}
void at_reset_counters(void) {
  for (auto &c : affgd::g_counters) c.store(0, std::memory_order_relaxed);
}

// ---- global switches (AT_FLAG_OPS) ----
void at_set_deterministic_algorithms(int on) {
  at::globalContext().setDeterministicAlgorithms(on != 0, /*warn_only=*/false);
}
int at_get_deterministic_algorithms(void) { return at::globalContext().deterministicAlgorithms() ? 1 : 0; }
void at_set_cudnn_deterministic(int on) { at::globalContext().setDeterministicCuDNN(on != 0); }
int at_get_cudnn_deterministic(void) { return at::globalContext().deterministicCuDNN() ? 1 : 0; }
void at_set_cudnn_benchmark(int on) { at::globalContext().setBenchmarkCuDNN(on != 0); }
int at_get_cudnn_benchmark(void) { return at::globalContext().benchmarkCuDNN() ? 1 : 0; }

// ---- CUDA memory ----
#ifdef AFFGD_HAS_DEVICE_ALLOCATOR
namespace {
c10::DeviceAllocator *cuda_allocator(int device) {
  TORCH_CHECK(device >= 0, "memory statistics are kept for CUDA devices only, not the CPU");
  affgd::to_device(device);  // a clear error without CUDA or for a device that does not exist
  return c10::getDeviceAllocator(c10::DeviceType::CUDA);
}
}  // namespace
#endif

at_err at_cuda_memory_stats(int device, int64_t *allocated, int64_t *peak_allocated,
                            int64_t *reserved, int64_t *peak_reserved) {
#ifdef AFFGD_HAS_DEVICE_ALLOCATOR
  AT_TRY({
    auto st = cuda_allocator(device)->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = st.allocated_bytes[agg].current;
    *peak_allocated = st.allocated_bytes[agg].peak;
    *reserved = st.reserved_bytes[agg].current;
    *peak_reserved = st.reserved_bytes[agg].peak;
  });
#else
  return affgd::dup_string("CUDA memory statistics need libtorch >= 2.8 (c10::DeviceAllocator)");
#endif
}

at_err at_cuda_reset_peak_memory(int device) {
#ifdef AFFGD_HAS_DEVICE_ALLOCATOR
  AT_TRY(cuda_allocator(device)->resetPeakStats(static_cast<c10::DeviceIndex>(device)));
#else
  return affgd::dup_string("CUDA memory statistics need libtorch >= 2.8 (c10::DeviceAllocator)");
#endif
}

at_err at_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes) {
#ifdef AFFGD_HAS_DEVICE_ALLOCATOR
  AT_TRY({
    auto ft = cuda_allocator(device)->getMemoryInfo(static_cast<c10::DeviceIndex>(device));
    *free_bytes = static_cast<int64_t>(ft.first);
    *total_bytes = static_cast<int64_t>(ft.second);
  });
#else
  return affgd::dup_string("CUDA memory information needs libtorch >= 2.8 (c10::DeviceAllocator)");
#endif
}

// ---- lifetime ----

void at_scope_enter(void) {
  t_scopes.emplace_back();
  t_scope_ids.push_back(g_next_scope.fetch_add(1));
}

at_err at_scope_exit(void) {
  if (t_scopes.empty()) return affgd::dup_string("scope exit without a matching enter on this thread");
  std::vector<at_box *> boxes = std::move(t_scopes.back());
  t_scopes.pop_back();
  t_scope_ids.pop_back();
  for (at_box *b : boxes) {
    if (b->kept) {
      b->kept = false;
      if (!b->escaped && !t_scopes.empty()) {
        t_scopes.back().push_back(b);  // the scope's reference moves to the parent
        b->scope.store(t_scope_ids.back());
        continue;
      }
      b->scope.store(0);
    } else {
      at_release(b);
    }
    unref(b);
  }
  return nullptr;
}

void at_scope_escape(at_tensor t) {
  if (t) {
    t->kept = true;
    t->escaped = true;
    t->scope.store(0);
  }
}

int at_scope_depth(void) { return static_cast<int>(t_scopes.size()); }

uint64_t at_scope_id(void) { return t_scope_ids.empty() ? 0 : t_scope_ids.back(); }

at_err at_scope_keep(at_tensor t) {
  if (!t) return nullptr;
  uint64_t s = t->scope.load();
  if (s == 0) return nullptr;  // in no scope (made outside one, or escaped): nothing releases it
  if (t_scope_ids.empty() || s != t_scope_ids.back())
    return affgd::dup_string(
        "the tensor belongs to another scope (an enclosing one, or another goroutine's): a scope "
        "keeps only tensors created while it is the innermost open scope");
  t->kept = true;
  return nullptr;
}

void at_release(at_tensor b) {
  if (!b) return;
  if (!b->released.exchange(true)) {
    b->t = at::Tensor();
    g_live.fetch_sub(1);
    g_bytes.fetch_sub(b->bytes);
  }
}

void at_drop(at_tensor b) {
  if (!b) return;
  at_release(b);
  unref(b);
}

int at_is_released(at_tensor b) { return b == nullptr || b->released.load(); }
int64_t at_live_tensors(void) { return g_live.load(); }
int64_t at_live_bytes(void) { return g_bytes.load(); }

int at_set_grad_enabled(int enabled) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(enabled != 0);
  return prev ? 1 : 0;
}
int at_is_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }

// ---- facts ----

at_err at_dim(at_tensor t, int64_t *out) { AT_TRY_FACT(*out = T(t).dim()); }
at_err at_sizes(at_tensor t, int64_t *out, int cap) {
  AT_TRY_FACT({
    auto &x = T(t);
    TORCH_CHECK(x.dim() <= cap, "shape buffer too small");
    for (int64_t i = 0; i < x.dim(); i++) out[i] = x.size(i);
  });
}
at_err at_strides(at_tensor t, int64_t *out, int cap) {
  AT_TRY_FACT({
    auto &x = T(t);
    TORCH_CHECK(x.dim() <= cap, "stride buffer too small");
    for (int64_t i = 0; i < x.dim(); i++) out[i] = x.stride(i);
  });
}
at_err at_dtype(at_tensor t, int *out) { AT_TRY_FACT(*out = affgd::from_scalar_type(T(t).scalar_type())); }
at_err at_device(at_tensor t, int *out) { AT_TRY_FACT(*out = affgd::from_device(T(t).device())); }
at_err at_numel(at_tensor t, int64_t *out) { AT_TRY_FACT(*out = T(t).numel()); }
at_err at_requires_grad(at_tensor t, int *out) { AT_TRY_FACT(*out = T(t).requires_grad() ? 1 : 0); }
at_err at_is_contiguous(at_tensor t, int *out) { AT_TRY_FACT(*out = T(t).is_contiguous() ? 1 : 0); }
at_err at_to_string(at_tensor t, char **out) {
  AT_TRY({
    std::ostringstream os;
    os << T(t);
    affgd::count_read();
    *out = affgd::dup_string(os.str());
  });
}

// ---- creation ----

at_err at_empty(const int64_t *shape, int nd, int dtype, int device, at_tensor *out) {
  AT_TRY(*out = wrap(at::empty(at::IntArrayRef(shape, nd), affgd::options(dtype, device))));
}
at_err at_zeros(const int64_t *shape, int nd, int dtype, int device, at_tensor *out) {
  AT_TRY(*out = wrap(at::zeros(at::IntArrayRef(shape, nd), affgd::options(dtype, device))));
}
at_err at_ones(const int64_t *shape, int nd, int dtype, int device, at_tensor *out) {
  AT_TRY(*out = wrap(at::ones(at::IntArrayRef(shape, nd), affgd::options(dtype, device))));
}
at_err at_full(const int64_t *shape, int nd, double value, int dtype, int device, at_tensor *out) {
  AT_TRY({
    auto opts = affgd::options(dtype, device);
    auto probe = at::empty({0}, opts.device(at::kCPU));
    *out = wrap(at::full(at::IntArrayRef(shape, nd), affgd::scalar_for(probe, value), opts));
  });
}
at_err at_arange(double start, double end, double step, int dtype, int device, at_tensor *out) {
  AT_TRY({
    auto opts = affgd::options(dtype, device);
    // For an integral dtype libtorch truncates the step to an integer before checking it, and a
    // step that truncates to 0 (say 0.5) then divides by zero: SIGFPE, the process dies.
    auto st = opts.dtype().toScalarType();
    TORCH_CHECK(!at::isIntegralType(st, /*includeBool=*/true) || step == 0 || std::trunc(step) != 0,
                "arange: step ", step, " truncates to 0 in the integral dtype ", st,
                "; ask for a floating-point dtype");
    auto probe = at::empty({0}, opts.device(at::kCPU));
    *out = wrap(at::arange(affgd::scalar_for(probe, start), affgd::scalar_for(probe, end),
                           affgd::scalar_for(probe, step), opts));
  });
}
at_err at_linspace(double start, double end, int64_t steps, int dtype, int device, at_tensor *out) {
  AT_TRY(*out = wrap(at::linspace(start, end, steps, affgd::options(dtype, device))));
}
at_err at_eye(int64_t n, int64_t m, int dtype, int device, at_tensor *out) {
  AT_TRY(*out = wrap(at::eye(n, m, affgd::options(dtype, device))));
}

at_err at_from_data(const void *data, int64_t nbytes, const int64_t *shape, int nd, int dtype,
                    int device, at_tensor *out) {
  AT_TRY({
    auto st = affgd::to_scalar_type(dtype);
    auto dev = affgd::to_device(device);
    auto t = at::empty(at::IntArrayRef(shape, nd), at::TensorOptions().dtype(st));
    TORCH_CHECK(static_cast<int64_t>(t.nbytes()) == nbytes, "data holds ", nbytes,
                " bytes but shape ", t.sizes(), " of ", st, " needs ", t.nbytes());
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    affgd::count(AT_COUNTER_uploads);
    *out = wrap(dev.is_cpu() ? t : t.to(dev));
  });
}

at_err at_copy_data(at_tensor h, void *dst, int64_t nbytes, int dtype) {
  AT_TRY({
    auto t = T(h).detach().to(at::kCPU, affgd::to_scalar_type(dtype)).contiguous();
    TORCH_CHECK(static_cast<int64_t>(t.nbytes()) == nbytes, "destination holds ", nbytes,
                " bytes but the tensor needs ", t.nbytes());
    if (nbytes > 0) std::memcpy(dst, t.data_ptr(), nbytes);
    affgd::count_read();
  });
}

at_err at_item(at_tensor t, double *out) {
  AT_TRY({
    auto &x = T(t);
    TORCH_CHECK(x.numel() == 1, "item() needs a tensor with one element, got shape ", x.sizes());
    *out = x.item<double>();
    affgd::count_read();
  });
}
at_err at_item_int(at_tensor t, int64_t *out) {
  AT_TRY({
    auto &x = T(t);
    TORCH_CHECK(x.numel() == 1, "item() needs a tensor with one element, got shape ", x.sizes());
    *out = x.item<int64_t>();
    affgd::count_read();
  });
}

// ---- random ----

at_err at_generator_new(uint64_t seed, int device, at_generator *out) {
  AT_TRY({
    auto dev = affgd::to_device(device);
    at::Generator g;
    if (dev.is_cpu()) {
      g = at::make_generator<at::CPUGeneratorImpl>(seed);
    } else {
      g = at::globalContext().defaultGenerator(dev).clone();
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_current_seed(seed);
    }
    *out = new at_gen_box{g};
  });
}
void at_generator_free(at_generator g) { delete g; }
at_err at_generator_seed(at_generator g, uint64_t seed) {
  AT_TRY({
    TORCH_CHECK(g, "nil generator");
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_current_seed(seed);
  });
}
at_err at_generator_get_state(at_generator g, at_tensor *out) {
  AT_TRY({
    TORCH_CHECK(g, "nil generator");
    std::lock_guard<std::mutex> lock(g->g.mutex());
    *out = wrap(g->g.get_state());
  });
}
at_err at_generator_set_state(at_generator g, at_tensor state) {
  AT_TRY({
    TORCH_CHECK(g, "nil generator");
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_state(T(state));
  });
}

static c10::optional<at::Generator> gen_of(at_generator g) {
  if (!g) return c10::nullopt;
  return g->g;
}

at_err at_rand(const int64_t *shape, int nd, int dtype, int device, at_generator g, at_tensor *out) {
  AT_TRY(*out = wrap(at::rand(at::IntArrayRef(shape, nd), gen_of(g), affgd::options(dtype, device))));
}
at_err at_randn(const int64_t *shape, int nd, int dtype, int device, at_generator g, at_tensor *out) {
  AT_TRY(*out = wrap(at::randn(at::IntArrayRef(shape, nd), gen_of(g), affgd::options(dtype, device))));
}
at_err at_randint(int64_t low, int64_t high, const int64_t *shape, int nd, int dtype, int device,
                  at_generator g, at_tensor *out) {
  AT_TRY(*out = wrap(at::randint(low, high, at::IntArrayRef(shape, nd), gen_of(g),
                                 affgd::options(dtype, device))));
}
at_err at_randperm(int64_t n, int dtype, int device, at_generator g, at_tensor *out) {
  AT_TRY(*out = wrap(at::randperm(n, gen_of(g), affgd::options(dtype, device))));
}
at_err at_uniform_(at_tensor t, double from, double to, at_generator g) {
  AT_TRY(T(t).uniform_(from, to, gen_of(g)));
}
at_err at_normal_(at_tensor t, double mean, double std, at_generator g) {
  AT_TRY(T(t).normal_(mean, std, gen_of(g)));
}
at_err at_bernoulli(at_tensor probs, at_generator g, at_tensor *out) {
  AT_TRY(*out = wrap(at::bernoulli(T(probs), gen_of(g))));
}
at_err at_dropout(at_tensor t, double p, int train, at_generator g, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    TORCH_CHECK(p >= 0 && p <= 1, "dropout probability must be in [0, 1], got ", p);
    if (!train || p == 0) {
      *out = wrap(x.clone());
    } else if (p == 1) {
      *out = wrap(x * 0);
    } else {
      // Same as F.dropout: mask ~ Bernoulli(1-p), scaled by 1/(1-p).
      auto mask = at::empty_like(x).bernoulli_(1 - p, gen_of(g));
      *out = wrap(x * mask.div_(1 - p));
    }
  });
}

// ---- conversion ----

at_err at_to(at_tensor t, int dtype, int device, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    auto st = dtype < 0 ? x.scalar_type() : affgd::to_scalar_type(dtype);
    auto dev = affgd::to_device(device);
    if (x.device().is_cpu() != dev.is_cpu()) affgd::count(dev.is_cpu() ? AT_COUNTER_reads : AT_COUNTER_uploads);
    *out = wrap(x.to(dev, st));
  });
}
at_err at_pin_memory(at_tensor t, int *pinned, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    TORCH_CHECK(x.device().is_cpu(), "pin_memory needs a CPU tensor, got one on ", x.device());
    if (at_cuda_is_available()) {
      *out = wrap(x.pin_memory());
      *pinned = 1;
    } else {
      *out = wrap(x);
      *pinned = 0;
    }
  });
}
at_err at_to_async(at_tensor t, int device, at_tensor *out) {
  AT_TRY({
    auto &x = T(t);
    auto dev = affgd::to_device(device);
    bool pinned = x.device().is_cpu() && !dev.is_cpu() && x.is_pinned();
    if (x.device().is_cpu() != dev.is_cpu() && !pinned)
      affgd::count(dev.is_cpu() ? AT_COUNTER_reads : AT_COUNTER_uploads);
    *out = wrap(x.to(dev, x.scalar_type(), /*non_blocking=*/true));
  });
}
at_err at_contiguous(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).contiguous())); }
at_err at_clone(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).clone())); }
at_err at_detach(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t).detach())); }
at_err at_shallow(at_tensor t, at_tensor *out) { AT_TRY(*out = wrap(T(t))); }

}  // extern "C"
