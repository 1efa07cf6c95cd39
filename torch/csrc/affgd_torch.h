/*
 * affgd_torch.h — the plain C API of affgd's libtorch shim.
 *
 * Everything that crosses between Go and libtorch goes through this header. It is plain C so that
 * a Go binary built on one machine runs on another where only the shim (libaffgd_torch.so) was
 * rebuilt against that machine's libtorch.
 *
 * Conventions
 *  - Every fallible call returns at_err: NULL on success, otherwise a malloc'd NUL-terminated
 *    message (libtorch's message without the C++ backtrace) that the caller frees with
 *    at_free_string. No C++ exception ever leaves the shim.
 *  - Results are written through out-parameters; an at_tensor result is a new handle owned by the
 *    caller (see "Lifetime" below).
 *  - Scalars are passed as double; for integral tensors an integral value is passed to libtorch
 *    as an integer scalar (so int64 + 2 stays int64, as in Python).
 *  - dtype codes are the AT_* constants below; a device is an int: -1 for CPU, i >= 0 for CUDA:i.
 *
 * Lifetime
 *  A handle owns one at::Tensor (which may share storage with others, as views do). Handles made
 *  while a scope is open on the calling OS thread are registered in that scope; at_scope_exit
 *  releases the storage of every registered handle that was not kept. The handle object itself is
 *  freed when both its owner (at_drop) and its scope are done with it, so a handle used after its
 *  scope closed gives an error, never a crash.
 */
#ifndef AFFGD_TORCH_H
#define AFFGD_TORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature in this header changes; the Go package checks it at start-up. */
#define AT_ABI_VERSION 3

typedef struct at_box *at_tensor;
typedef struct at_gen_box *at_generator;
typedef char *at_err;

enum {
  AT_FLOAT32 = 0,
  AT_FLOAT64 = 1,
  AT_FLOAT16 = 2,
  AT_BFLOAT16 = 3,
  AT_INT64 = 4,
  AT_INT32 = 5,
  AT_INT16 = 6,
  AT_INT8 = 7,
  AT_UINT8 = 8,
  AT_BOOL = 9
};

/* ---- library ---- */
int at_abi_version(void);
void at_free_string(char *s);
void at_free(void *p);
const char *at_torch_version(void);
at_err at_set_num_threads(int n);
int at_get_num_threads(void);
int at_cuda_is_available(void);
int at_cuda_device_count(void);
at_err at_cuda_synchronize(int device);
at_err at_manual_seed(uint64_t seed); /* seeds libtorch's global generators (CPU and CUDA) */
/* Whether CUDA float32 matrix products (cuBLAS) and convolutions (cuDNN) may use TF32. */
void at_set_allow_tf32(int cublas, int cudnn);
void at_get_allow_tf32(int *cublas, int *cudnn);
/* Global switches, as torch.use_deterministic_algorithms (deterministic_algorithms; warn_only
 * false: an op without a deterministic implementation raises), torch.backends.cudnn.deterministic
 * and torch.backends.cudnn.benchmark: at_set_<name>(0 or 1), at_get_<name>(). */
#define AT_FLAG_OPS(X) X(deterministic_algorithms) X(cudnn_deterministic) X(cudnn_benchmark)
#define AT_DECLARE_FLAG(name) void at_set_##name(int on); int at_get_##name(void);
AT_FLAG_OPS(AT_DECLARE_FLAG)
#undef AT_DECLARE_FLAG
/* The CUDA caching allocator's statistics of a device, in bytes, as torch.cuda.memory_allocated,
 * max_memory_allocated, memory_reserved and max_memory_reserved (all allocations, all pools).
 * An error on the CPU, without CUDA, or with a libtorch older than 2.8 (no DeviceAllocator). */
at_err at_cuda_memory_stats(int device, int64_t *allocated, int64_t *peak_allocated,
                            int64_t *reserved, int64_t *peak_reserved);
/* Resets the peaks to the current values, as torch.cuda.reset_peak_memory_stats. */
at_err at_cuda_reset_peak_memory(int device);
/* The device's free and total memory as the driver reports them (cudaMemGetInfo). */
at_err at_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes);

/* ---- counters ----
 * Process-wide counts, kept with relaxed atomics (always on; reading them is cheap), of what a
 * GPU pays for: calls into the shim, the calls among them that launch tensor work, reads of
 * device values by the host (item, copies of tensor data to host memory, a .to(cpu) of a device
 * tensor, and the ops whose output size depends on the values: nonzero, masked_select, unique and
 * boolean-mask indexing), and blocking host-to-device copies (tensors made from host memory,
 * .to(cuda) of a CPU tensor). Reads and uploads are counted on every device, so a CPU run shows
 * what the same code would stall on on a GPU; a .to() between CPU tensors counts nothing. A fused
 * call ("fused transformer blocks", "fused K-means step") is one call that counts each op it runs. */
#define AT_COUNTERS(X) X(calls) X(ops) X(reads) X(uploads)
enum {
#define AT_COUNTER_ENUM(name) AT_COUNTER_##name,
  AT_COUNTERS(AT_COUNTER_ENUM)
#undef AT_COUNTER_ENUM
  AT_NUM_COUNTERS
};
/* Writes min(n, AT_NUM_COUNTERS) counters into out, in AT_COUNTERS order. */
void at_counters(int64_t *out, int n);
void at_reset_counters(void);

/* ---- lifetime and scopes ---- */
void at_scope_enter(void);
at_err at_scope_exit(void);
int at_scope_depth(void);
/* The innermost open scope's id on this thread (unique in the process), 0 with none. */
uint64_t at_scope_id(void);
/* Exempts t from the innermost scope's release. An error if another scope holds t (an enclosing
 * one, or a scope of another thread); nothing to do for a handle in no scope. */
at_err at_scope_keep(at_tensor t);
/* The handle leaves its scope for good: no scope will release it (its owner frees it). */
void at_scope_escape(at_tensor t);
void at_release(at_tensor t); /* frees the storage now; idempotent */
void at_drop(at_tensor t);    /* the owner is done with the handle (Go's cleanup) */
int at_is_released(at_tensor t);
int64_t at_live_tensors(void);
int64_t at_live_bytes(void);

/* ---- grad mode (per OS thread) ---- */
int at_set_grad_enabled(int enabled); /* returns the previous mode */
int at_is_grad_enabled(void);

/* ---- tensor facts ---- */
at_err at_dim(at_tensor t, int64_t *out);
at_err at_sizes(at_tensor t, int64_t *out, int cap); /* cap >= dim */
at_err at_strides(at_tensor t, int64_t *out, int cap);
at_err at_dtype(at_tensor t, int *out);
at_err at_device(at_tensor t, int *out);
at_err at_numel(at_tensor t, int64_t *out);
at_err at_requires_grad(at_tensor t, int *out);
at_err at_is_contiguous(at_tensor t, int *out);
at_err at_to_string(at_tensor t, char **out);

/* ---- creation ---- */
at_err at_empty(const int64_t *shape, int nd, int dtype, int device, at_tensor *out);
at_err at_zeros(const int64_t *shape, int nd, int dtype, int device, at_tensor *out);
at_err at_ones(const int64_t *shape, int nd, int dtype, int device, at_tensor *out);
at_err at_full(const int64_t *shape, int nd, double value, int dtype, int device, at_tensor *out);
at_err at_arange(double start, double end, double step, int dtype, int device, at_tensor *out);
at_err at_linspace(double start, double end, int64_t steps, int dtype, int device, at_tensor *out);
at_err at_eye(int64_t n, int64_t m, int dtype, int device, at_tensor *out);
/* Copies nbytes of host memory laid out C-contiguously. */
at_err at_from_data(const void *data, int64_t nbytes, const int64_t *shape, int nd, int dtype,
                    int device, at_tensor *out);
/* Copies the tensor's values, C-contiguous, as dtype, into host memory of nbytes. */
at_err at_copy_data(at_tensor t, void *dst, int64_t nbytes, int dtype);
at_err at_item(at_tensor t, double *out);
at_err at_item_int(at_tensor t, int64_t *out);

/* ---- random ---- */
at_err at_generator_new(uint64_t seed, int device, at_generator *out);
void at_generator_free(at_generator g);
at_err at_generator_seed(at_generator g, uint64_t seed);
at_err at_generator_get_state(at_generator g, at_tensor *out);
at_err at_generator_set_state(at_generator g, at_tensor state);
/* g may be NULL: libtorch's global generator. */
at_err at_rand(const int64_t *shape, int nd, int dtype, int device, at_generator g, at_tensor *out);
at_err at_randn(const int64_t *shape, int nd, int dtype, int device, at_generator g, at_tensor *out);
at_err at_randint(int64_t low, int64_t high, const int64_t *shape, int nd, int dtype, int device,
                  at_generator g, at_tensor *out);
at_err at_randperm(int64_t n, int dtype, int device, at_generator g, at_tensor *out);
at_err at_uniform_(at_tensor t, double from, double to, at_generator g);
at_err at_normal_(at_tensor t, double mean, double std, at_generator g);
at_err at_bernoulli(at_tensor probs, at_generator g, at_tensor *out);
at_err at_dropout(at_tensor t, double p, int train, at_generator g, at_tensor *out);

/* ---- conversion ---- */
at_err at_to(at_tensor t, int dtype, int device, at_tensor *out); /* dtype -1 keeps it */
at_err at_contiguous(at_tensor t, at_tensor *out);
at_err at_clone(at_tensor t, at_tensor *out);
at_err at_detach(at_tensor t, at_tensor *out);
at_err at_shallow(at_tensor t, at_tensor *out); /* a second handle to the same tensor */
/* A page-locked (pinned) copy of a CPU tensor when CUDA is available (*pinned = 1); otherwise,
   CPU-only libtorch having no pinned memory, a second handle to t itself (*pinned = 0). */
at_err at_pin_memory(at_tensor t, int *pinned, at_tensor *out);
/* t on device with non_blocking = true: from pinned memory the host does not wait for the copy
   (not counted as a blocking upload); from pageable memory it is an ordinary copy. */
at_err at_to_async(at_tensor t, int device, at_tensor *out);

/* ---- host buffers, copy streams and events (issue 10: the loader overlapped with compute) ----
 * Device-generic: the shim uses c10::Stream / c10::Event and the device guard interface, never
 * CUDA headers, so the same source builds against CPU-only and CUDA libtorch.
 *  - at_empty_host: an uninitialised C-contiguous CPU tensor, page-locked when pin != 0 and CUDA
 *    is available (*pinned = 1); otherwise ordinary memory (*pinned = 0). A failed pinned
 *    allocation is an error (the caller decides on a fallback).
 *  - at_data_ptr: the address and size of a C-contiguous CPU tensor's memory (for writers that
 *    fill it without calling libtorch; valid while the tensor's storage lives).
 *  - at_storage_shared: *shared = 1 when anything besides this handle still references t's
 *    tensor or storage (a view, an alias, an autograd graph), 0 when this handle is the only one.
 *  - at_copy_stream_new: a side stream of the device for host-to-device copies (from libtorch's
 *    stream pool); for the CPU (device -1) a stream that copies synchronously (no stream at all).
 *  - at_copy_stream_upload: copies the n CPU tensors src to the stream's device, on the side
 *    stream (non-blocking from pinned memory), writes n new handles into dst and a new event into
 *    *done recorded after the copies. The copies' device memory is recorded for use on the
 *    calling thread's current (compute) stream, so the caching allocator does not reuse it
 *    before the work queued there with it is done. On the CPU dst are the tensors themselves
 *    (second handles) and *done is an event that is already complete.
 *  - at_event_wait: the calling thread's current stream of the event's device waits for it (the
 *    host does not); at_event_synchronize: the host waits; at_event_query: *done = 1 when
 *    complete; at_event_elapsed_ms: device time between the upload's start and its event (an
 *    error on the CPU or before completion). CPU events: complete, waits are no-ops. */
typedef struct at_stream_box *at_stream;
typedef struct at_event_box *at_event;
#define AT_STREAM_OPS(X)                                                                          \
  X(empty_host, (const int64_t *shape, int nd, int dtype, int pin, int *pinned, at_tensor *out))  \
  X(data_ptr, (at_tensor t, void **out, int64_t *nbytes))                                         \
  X(storage_shared, (at_tensor t, int *shared))                                                   \
  X(copy_stream_new, (int device, at_stream *out))                                                \
  X(copy_stream_upload, (at_stream s, const at_tensor *src, int n, at_tensor *dst, at_event *done)) \
  X(event_wait, (at_event e))                                                                     \
  X(event_synchronize, (at_event e))                                                              \
  X(event_query, (at_event e, int *done))                                                         \
  X(event_elapsed_ms, (at_event e, double *ms))
#define AT_DECLARE_STREAM_OP(name, params) at_err at_##name params;
AT_STREAM_OPS(AT_DECLARE_STREAM_OP)
#undef AT_DECLARE_STREAM_OP
void at_copy_stream_free(at_stream s);
void at_event_free(at_event e);

/* ---- shape ---- */
at_err at_reshape(at_tensor t, const int64_t *shape, int nd, at_tensor *out);
at_err at_view(at_tensor t, const int64_t *shape, int nd, at_tensor *out);
at_err at_permute(at_tensor t, const int64_t *dims, int nd, at_tensor *out);
at_err at_transpose(at_tensor t, int64_t d0, int64_t d1, at_tensor *out);
at_err at_flatten(at_tensor t, int64_t start, int64_t end, at_tensor *out);
at_err at_unsqueeze(at_tensor t, int64_t dim, at_tensor *out);
at_err at_squeeze(at_tensor t, int has_dim, int64_t dim, at_tensor *out);
at_err at_expand(at_tensor t, const int64_t *shape, int nd, at_tensor *out);
at_err at_repeat(at_tensor t, const int64_t *reps, int nd, at_tensor *out);
at_err at_repeat_interleave(at_tensor t, int64_t repeats, int has_dim, int64_t dim, at_tensor *out);
at_err at_cat(const at_tensor *ts, int n, int64_t dim, at_tensor *out);
at_err at_stack(const at_tensor *ts, int n, int64_t dim, at_tensor *out);
/* List results: *outs is a malloc'd array of *n handles; free the array with at_free. */
at_err at_chunk(at_tensor t, int64_t chunks, int64_t dim, at_tensor **outs, int *n);
at_err at_split(at_tensor t, int64_t size, int64_t dim, at_tensor **outs, int *n);
at_err at_narrow(at_tensor t, int64_t dim, int64_t start, int64_t length, at_tensor *out);
at_err at_slice(at_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, at_tensor *out);
at_err at_select(at_tensor t, int64_t dim, int64_t index, at_tensor *out);
at_err at_index_select(at_tensor t, int64_t dim, at_tensor index, at_tensor *out);
at_err at_gather(at_tensor t, int64_t dim, at_tensor index, at_tensor *out);
at_err at_scatter(at_tensor t, int64_t dim, at_tensor index, at_tensor src, at_tensor *out);
at_err at_scatter_add(at_tensor t, int64_t dim, at_tensor index, at_tensor src, at_tensor *out);
/* Advanced indexing t[i0, i1, ...]; a NULL entry stands for ':'. Boolean index tensors mask. */
at_err at_index(at_tensor t, const at_tensor *idx, int n, at_tensor *out);
at_err at_index_put_(at_tensor t, const at_tensor *idx, int n, at_tensor values, int accumulate);
at_err at_masked_select(at_tensor t, at_tensor mask, at_tensor *out);
at_err at_masked_fill(at_tensor t, at_tensor mask, double value, at_tensor *out);
at_err at_masked_fill_(at_tensor t, at_tensor mask, double value);
at_err at_where(at_tensor cond, at_tensor a, at_tensor b, at_tensor *out);
at_err at_nonzero(at_tensor t, at_tensor *out);
at_err at_tril(at_tensor t, int64_t diagonal, at_tensor *out);
at_err at_triu(at_tensor t, int64_t diagonal, at_tensor *out);
at_err at_flip(at_tensor t, const int64_t *dims, int nd, at_tensor *out);

/* ---- elementwise: one input ---- */
#define AT_UNARY_OPS(X)                                                                          \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(relu) X(sigmoid) X(tanh) X(floor) X(ceil)       \
  X(round) X(sign) X(reciprocal) X(logical_not) X(isnan) X(isinf) X(sin) X(cos) X(square)        \
  X(bitwise_not)
#define AT_DECLARE_UNARY(name) at_err at_##name(at_tensor t, at_tensor *out);
AT_UNARY_OPS(AT_DECLARE_UNARY)
#undef AT_DECLARE_UNARY
/* in place: t.op_() */
#define AT_UNARY_INPLACE_OPS(X) X(relu_) X(neg_) X(exp_) X(zero_) X(sigmoid_) X(sqrt_) X(abs_)
#define AT_DECLARE_UNARY_(name) at_err at_##name(at_tensor t);
AT_UNARY_INPLACE_OPS(AT_DECLARE_UNARY_)
#undef AT_DECLARE_UNARY_

/* ---- elementwise: two tensors (broadcasting) ---- */
#define AT_BINARY_OPS(X)                                                                         \
  X(add) X(sub) X(mul) X(div) X(pow) X(eq) X(ne) X(gt) X(ge) X(lt) X(le) X(logical_and)           \
  X(logical_or) X(logical_xor) X(maximum) X(minimum) X(matmul) X(mm) X(bmm) X(remainder)         \
  X(atan2) X(floor_divide)
#define AT_DECLARE_BINARY(name) at_err at_##name(at_tensor a, at_tensor b, at_tensor *out);
AT_BINARY_OPS(AT_DECLARE_BINARY)
#undef AT_DECLARE_BINARY
/* in place: a.op_(b) */
#define AT_BINARY_INPLACE_OPS(X) X(add_) X(sub_) X(mul_) X(div_) X(copy_)
#define AT_DECLARE_BINARY_(name) at_err at_##name(at_tensor a, at_tensor b);
AT_BINARY_INPLACE_OPS(AT_DECLARE_BINARY_)
#undef AT_DECLARE_BINARY_

/* ---- elementwise: tensor and scalar ---- */
#define AT_SCALAR_OPS(X)                                                                         \
  X(add_scalar) X(sub_scalar) X(mul_scalar) X(div_scalar) X(pow_scalar) X(rsub_scalar)           \
  X(eq_scalar) X(ne_scalar) X(gt_scalar) X(ge_scalar) X(lt_scalar) X(le_scalar) X(clamp_min)     \
  X(clamp_max) X(remainder_scalar) X(fmod_scalar)
#define AT_DECLARE_SCALAR(name) at_err at_##name(at_tensor a, double s, at_tensor *out);
AT_SCALAR_OPS(AT_DECLARE_SCALAR)
#undef AT_DECLARE_SCALAR
#define AT_SCALAR_INPLACE_OPS(X) X(add_scalar_) X(mul_scalar_) X(fill_) X(clamp_min_) X(clamp_max_)
#define AT_DECLARE_SCALAR_(name) at_err at_##name(at_tensor a, double s);
AT_SCALAR_INPLACE_OPS(AT_DECLARE_SCALAR_)
#undef AT_DECLARE_SCALAR_

/* a + alpha*b (out of place and in place), as torch.add(a, b, alpha=...) */
at_err at_add_alpha(at_tensor a, at_tensor b, double alpha, at_tensor *out);
at_err at_add_alpha_(at_tensor a, at_tensor b, double alpha);
at_err at_clamp(at_tensor t, int has_min, double min, int has_max, double max, at_tensor *out);
at_err at_clamp_(at_tensor t, int has_min, double min, int has_max, double max);
at_err at_gelu(at_tensor t, int tanh_approx, at_tensor *out);
at_err at_softmax(at_tensor t, int64_t dim, at_tensor *out);
at_err at_log_softmax(at_tensor t, int64_t dim, at_tensor *out);

/* ---- reductions ---- */
/* dims==NULL/nd==0 reduces all dimensions. */
at_err at_sum(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out);
at_err at_mean(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out);
at_err at_logsumexp(at_tensor t, const int64_t *dims, int nd, int keepdim, at_tensor *out);
at_err at_std(at_tensor t, const int64_t *dims, int nd, int unbiased, int keepdim, at_tensor *out);
at_err at_var(at_tensor t, const int64_t *dims, int nd, int unbiased, int keepdim, at_tensor *out);
at_err at_norm(at_tensor t, double p, const int64_t *dims, int nd, int keepdim, at_tensor *out);
at_err at_prod(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out);
at_err at_max_all(at_tensor t, at_tensor *out);
at_err at_min_all(at_tensor t, at_tensor *out);
at_err at_max_dim(at_tensor t, int64_t dim, int keepdim, at_tensor *values, at_tensor *indices);
at_err at_min_dim(at_tensor t, int64_t dim, int keepdim, at_tensor *values, at_tensor *indices);
at_err at_argmax(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out);
at_err at_argmin(at_tensor t, int has_dim, int64_t dim, int keepdim, at_tensor *out);
at_err at_any(at_tensor t, at_tensor *out);
at_err at_all(at_tensor t, at_tensor *out);
at_err at_cumsum(at_tensor t, int64_t dim, at_tensor *out);
at_err at_topk(at_tensor t, int64_t k, int64_t dim, int largest, int sorted, at_tensor *values,
               at_tensor *indices);
at_err at_sort(at_tensor t, int64_t dim, int descending, int stable, at_tensor *values,
               at_tensor *indices);
at_err at_unique(at_tensor t, int sorted, int return_inverse, int return_counts, at_tensor *values,
                 at_tensor *inverse, at_tensor *counts);

/* ---- linear algebra ---- */
at_err at_einsum(const char *equation, const at_tensor *ts, int n, at_tensor *out);
at_err at_cdist(at_tensor a, at_tensor b, double p, at_tensor *out);
/* F.normalize: t / t.norm(p, dim, keepdim=True).clamp_min(eps) */
at_err at_normalize(at_tensor t, double p, int64_t dim, double eps, at_tensor *out);

/* ---- neural-network functions ---- */
at_err at_linear(at_tensor x, at_tensor w, at_tensor b /* may be NULL */, at_tensor *out);
at_err at_conv2d(at_tensor x, at_tensor w, at_tensor b, const int64_t *stride,
                 const int64_t *padding, const int64_t *dilation, int64_t groups, at_tensor *out);
/* Updates running_mean/running_var in place when training (as F.batch_norm). */
at_err at_batch_norm(at_tensor x, at_tensor w, at_tensor b, at_tensor running_mean,
                     at_tensor running_var, int training, double momentum, double eps,
                     at_tensor *out);
at_err at_layer_norm(at_tensor x, const int64_t *shape, int nd, at_tensor w, at_tensor b,
                     double eps, at_tensor *out);
at_err at_avg_pool2d(at_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int ceil_mode, int count_include_pad,
                     int64_t divisor_override /* 0: none */, at_tensor *out);
at_err at_adaptive_avg_pool2d(at_tensor x, int64_t oh, int64_t ow, at_tensor *out);
at_err at_max_pool2d(at_tensor x, const int64_t *kernel, const int64_t *stride,
                     const int64_t *padding, int ceil_mode, at_tensor *out);
/* mode 0 nearest, 1 bilinear, 2 bicubic. has_scales: pass scale factors to the kernel as
 * F.interpolate(scale_factor=...) does; out_h/out_w must then be floor(in*scale). */
at_err at_interpolate(at_tensor x, int mode, int64_t out_h, int64_t out_w, int has_scales,
                      double scale_h, double scale_w, int align_corners, int antialias,
                      at_tensor *out);
/* reduction 0 none, 1 mean, 2 sum */
at_err at_cross_entropy(at_tensor logits, at_tensor target, at_tensor weight, int reduction,
                        int64_t ignore_index, double label_smoothing, at_tensor *out);
/* F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p=0, is_causal, scale) for q
 * (..., L, E), k (..., S, E), v (..., S, Ev): softmax(q·kᵀ·scale + mask)·v. attn_mask may be NULL,
 * additive (q's dtype) or boolean (true: takes part), broadcast to (..., L, S); is_causal masks
 * the upper triangle and excludes attn_mask. has_scale 0: scale = 1/sqrt(E). libtorch >= 2.1 runs
 * its fused kernels (flash / memory-efficient / CPU flash); older ones compute the math directly. */
at_err at_scaled_dot_product_attention(at_tensor q, at_tensor k, at_tensor v,
                                       at_tensor attn_mask /* may be NULL */, int is_causal,
                                       int has_scale, double scale, at_tensor *out);

/* ---- fused transformer blocks ----
 * One call runs a whole pre-norm transformer block with the same libtorch ops, in the same order
 * and with the same arguments, as the op-by-op calls of models/dino (Block.forward) and
 * models/clip (Block.forward), so that its result is bitwise theirs (tested on the CPU in float32,
 * bfloat16 and float16; on a GPU the same kernels run, not yet measured there).
 * It adds one to the calls counter and the number of ops it runs (the count the op-by-op calls
 * add, views included) to the ops counter, so "ops launched" keeps meaning what a GPU launches.
 * x is (B, N, C). w holds nw = 12 tensors: norm1 weight, bias; the packed q/k/v projection
 * weight (3C, C), bias; the output projection weight, bias; norm2 weight, bias; the MLP's first
 * linear weight, bias; its second linear weight, bias. A NULL bias is none (as F.linear); the
 * LayerNorm weights are required. eps1/eps2 are norm1's and norm2's epsilon.
 *  vit_block   DINO's (timm's) Block: qkv(norm1(x)) reshaped (B, N, 3, heads, C/heads) and
 *              permuted (3, B, heads, N, C/heads); softmax(q·kᵀ·scale)·v, heads merged, proj;
 *              residual; fc2(GELU(fc1(norm2(x)))) with exact GELU; residual. mask must be NULL.
 *  clip_block  open_clip's ResidualAttentionBlock: in_proj(ln_1(x)) chunked in q, k, v, each
 *              (B, heads, N, C/heads); scaled_dot_product_attention(q, k, v, mask) with its
 *              default scale (scale must be 0), heads merged, out_proj; residual;
 *              c_proj(QuickGELU(c_fc(ln_2(x)))); residual. mask: additive, broadcast to
 *              (B, heads, N, N), or NULL. */
#define AT_BLOCK_OPS(X) X(vit_block) X(clip_block)
#define AT_DECLARE_BLOCK(name)                                                                   \
  at_err at_##name(at_tensor x, const at_tensor *w, int nw, at_tensor mask, int64_t heads,        \
                   double eps1, double eps2, double scale, at_tensor *out);
AT_BLOCK_OPS(AT_DECLARE_BLOCK)
#undef AT_DECLARE_BLOCK

/* ---- fused K-means step ----
 * One iteration of discovery's batched Lloyd loop (kmeansBatch) for nc point sets in one call,
 * with the op-by-op loop body's libtorch ops in its order (bitwise its result; the ops counter
 * counts each of its 25 ops). x (nc, N, C) points, x2 = 2·x, xx (nc, N, 1) their squared norms,
 * clusters (1, K, 1) int64 0..K−1, w (nc, 1, N) the points' 0/1 weights, c (nc, K, C) the
 * centroids, active (nc, 1, 1) bool: the sets still iterating. *next: the new centroids (a set
 * not active keeps c); *still: active and its error Σ(mean − c)² > tol. */
at_err at_kmeans_step(at_tensor x, at_tensor x2, at_tensor xx, at_tensor clusters, at_tensor w,
                      at_tensor c, at_tensor active, double tol, at_tensor *next, at_tensor *still);

/* ---- autograd ---- */
at_err at_set_requires_grad(at_tensor t, int requires);
at_err at_backward(at_tensor t, at_tensor grad /* may be NULL */, int retain_graph);
at_err at_grad(at_tensor t, at_tensor *out); /* *out NULL when there is no gradient */
at_err at_set_grad(at_tensor t, at_tensor grad /* NULL clears */);
at_err at_zero_grad(at_tensor t); /* sets .grad to None, as optimizer.zero_grad() */
at_err at_is_leaf(at_tensor t, int *out);

/* ---- TorchScript archives (torch.jit.save), compiled in its own file ---- */
/* Reads every parameter and buffer (recursively, dotted names) of a TorchScript module.
 * *names: malloc'd array of malloc'd strings, *tensors: malloc'd array; free each with at_free /
 * at_free_string (tensors are handles like any other). */
at_err at_jit_load_tensors(const char *path, char ***names, at_tensor **tensors, int *n);
/* Writes a TorchScript archive (torch.jit.save format) at path whose module tree holds the n
 * tensors under their dotted names (a.b.c: submodule a, its submodule b, attribute c); floating
 * tensors become parameters, others buffers, all stored on the CPU. No methods are compiled. */
at_err at_jit_save_tensors(const char *path, const char *const *names, const at_tensor *tensors,
                           int n);

#ifdef __cplusplus
}
#endif

#endif /* AFFGD_TORCH_H */
