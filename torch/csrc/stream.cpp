// stream.cpp — host buffers, copy streams and events (affgd_torch.h, AT_STREAM_OPS).
//
// Device-generic on purpose: c10::Stream, c10::Event, c10::StreamGuard and the device guard
// interface (c10::impl::VirtualGuardImpl) reach CUDA through libtorch's registry, so this file
// includes no CUDA header and builds, links and runs against CPU-only libtorch, where the CPU
// paths below are the only ones taken (to_device refuses a CUDA device there).
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <memory>
#include <optional>

#include "internal.h"

struct at_stream_box {
  c10::Device dev{c10::kCPU};
  std::optional<c10::Stream> side;  // the copy stream; none on the CPU (copies are synchronous)
};

struct at_event_box {
  c10::Device dev{c10::kCPU};
  std::optional<c10::Event> start, done;  // none on the CPU: complete from the start
};

using affgd::T;
using affgd::wrap;

extern "C" {

at_err at_empty_host(const int64_t *shape, int nd, int dtype, int pin, int *pinned, at_tensor *out) {
  AT_TRY({
    auto opts = at::TensorOptions().dtype(affgd::to_scalar_type(dtype));
    bool p = pin != 0 && at_cuda_is_available();  // CPU-only libtorch has no pinned memory
    if (p) opts = opts.pinned_memory(true);
    *out = wrap(at::empty(at::IntArrayRef(shape, nd), opts));
    *pinned = p ? 1 : 0;
  });
}

at_err at_data_ptr(at_tensor t, void **out, int64_t *nbytes) {
  AT_TRY_FACT({
    auto &x = T(t);
    TORCH_CHECK(x.device().is_cpu(), "data_ptr: the tensor is on ", x.device(), ", not in host memory");
    TORCH_CHECK(x.is_contiguous(), "data_ptr: the tensor is not C-contiguous");
    *out = x.data_ptr();
    *nbytes = static_cast<int64_t>(x.nbytes());
  });
}

at_err at_storage_shared(at_tensor t, int *shared) {
  AT_TRY_FACT({
    auto &x = T(t);
    bool s = x.use_count() > 1 || (x.has_storage() && x.storage().use_count() > 1);
    *shared = s ? 1 : 0;
  });
}

at_err at_copy_stream_new(int device, at_stream *out) {
  AT_TRY({
    auto dev = affgd::to_device(device);
    auto b = std::make_unique<at_stream_box>();
    b->dev = dev;
    if (!dev.is_cpu()) {
      c10::impl::VirtualGuardImpl impl(dev.type());
      b->side = impl.getStreamFromGlobalPool(dev, /*isHighPriority=*/false);
    }
    *out = b.release();
  });
}

void at_copy_stream_free(at_stream s) { delete s; }

at_err at_copy_stream_upload(at_stream s, const at_tensor *src, int n, at_tensor *dst, at_event *done) {
  AT_TRY({
    TORCH_CHECK(s != nullptr, "nil copy stream");
    TORCH_CHECK(n >= 0 && (n == 0 || (src != nullptr && dst != nullptr)), "upload: bad tensor list");
    std::vector<at::Tensor> outs;
    outs.reserve(n);
    auto ev = std::make_unique<at_event_box>();
    ev->dev = s->dev;
    for (int i = 0; i < n; i++) {
      auto &x = T(src[i]);
      TORCH_CHECK(x.device().is_cpu(), "upload: tensor ", i, " is on ", x.device(), ", not in host memory");
    }
    if (!s->side) {
      for (int i = 0; i < n; i++) outs.push_back(T(src[i]));  // the CPU: the tensors themselves
    } else {
      c10::impl::VirtualGuardImpl impl(s->dev.type());
      c10::Stream compute = impl.getStream(s->dev);  // this thread's current stream
      ev->start.emplace(s->dev.type(), c10::EventFlag::BACKEND_DEFAULT);  // timing on
      ev->done.emplace(s->dev.type(), c10::EventFlag::BACKEND_DEFAULT);
      {
        c10::StreamGuard guard(*s->side);  // the copies and their memory on the side stream
        ev->start->record(*s->side);
        for (int i = 0; i < n; i++) {
          auto &x = T(src[i]);
          if (!x.is_pinned()) affgd::count(AT_COUNTER_uploads);  // pageable: the host waits
          outs.push_back(x.to(s->dev, x.scalar_type(), /*non_blocking=*/true));
        }
        ev->done->record(*s->side);
      }
      // Allocated on the side stream, read on the compute stream: the allocator must not hand
      // the memory out again before the compute stream's work with it is done.
      for (auto &o : outs)
        if (o.has_storage()) impl.recordDataPtrOnStream(o.storage().data_ptr(), compute);
    }
    for (int i = 0; i < n; i++) dst[i] = wrap(std::move(outs[i]));
    *done = ev.release();
  });
}

at_err at_event_wait(at_event e) {
  AT_TRY({
    TORCH_CHECK(e != nullptr, "nil event");
    if (e->done) {
      c10::impl::VirtualGuardImpl impl(e->dev.type());
      e->done->block(impl.getStream(e->dev));
    }
  });
}

at_err at_event_synchronize(at_event e) {
  AT_TRY({
    TORCH_CHECK(e != nullptr, "nil event");
    if (e->done) e->done->synchronize();
  });
}

at_err at_event_query(at_event e, int *done) {
  AT_TRY_FACT({
    TORCH_CHECK(e != nullptr, "nil event");
    *done = (!e->done || e->done->query()) ? 1 : 0;
  });
}

at_err at_event_elapsed_ms(at_event e, double *ms) {
  AT_TRY_FACT({
    TORCH_CHECK(e != nullptr, "nil event");
    TORCH_CHECK(e->done, "upload timing exists for copies to a CUDA device only, not the CPU");
    TORCH_CHECK(e->done->query(), "upload timing: the copies have not completed yet");
    *ms = e->start->elapsedTime(*e->done);
  });
}

void at_event_free(at_event e) { delete e; }

}  // extern "C"
