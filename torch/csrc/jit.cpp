// jit.cpp — reading parameters and buffers out of TorchScript archives (torch.jit.save), such as
// OpenAI's CLIP ViT-B-16.pt. Kept in its own translation unit: torch/script.h is slow to compile.
#include <torch/script.h>

#include "internal.h"

extern "C" {

at_err at_jit_load_tensors(const char *path, char ***names, at_tensor **tensors, int *n) {
  *names = nullptr;
  *tensors = nullptr;
  *n = 0;
  AT_TRY({
    // Loading a TorchScript archive deserialises its module and tensors; no forward code runs.
    auto module = torch::jit::load(path, c10::Device(c10::kCPU));
    std::vector<std::pair<std::string, at::Tensor>> all;
    for (const auto &p : module.named_parameters(/*recurse=*/true)) all.emplace_back(p.name, p.value);
    for (const auto &b : module.named_buffers(/*recurse=*/true)) all.emplace_back(b.name, b.value);
    auto **nm = static_cast<char **>(std::malloc(sizeof(char *) * (all.size() + 1)));
    auto **ts = static_cast<at_tensor *>(std::malloc(sizeof(at_tensor) * (all.size() + 1)));
    TORCH_CHECK(nm && ts, "out of memory");
    for (size_t i = 0; i < all.size(); i++) {
      nm[i] = affgd::dup_string(all[i].first);
      ts[i] = affgd::wrap(all[i].second.detach());
    }
    *names = nm;
    *tensors = ts;
    *n = static_cast<int>(all.size());
  });
}

}  // extern "C"
