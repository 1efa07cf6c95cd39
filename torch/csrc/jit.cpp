// jit.cpp — reading parameters and buffers out of TorchScript archives (torch.jit.save), such as
// OpenAI's CLIP ViT-B-16.pt, and writing named tensors as such an archive. Kept in its own
// translation unit: torch/script.h is slow to compile.
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

at_err at_jit_save_tensors(const char *path, const char *const *names, const at_tensor *tensors,
                           int n) {
  AT_TRY({
    TORCH_CHECK(n >= 0, "negative tensor count ", n);
    // One compilation unit for every module type; each type gets a distinct (mangled) name, so
    // the archive holds one class per submodule, as torch.jit.save of a module tree does.
    auto cu = std::make_shared<torch::jit::CompilationUnit>();
    auto make_module = [&cu]() {
      torch::jit::Module m(c10::QualifiedName("__torch__.affgd.Module"), cu, /*shouldMangle=*/true);
      m.register_attribute("training", c10::BoolType::get(), false);
      return m;
    };
    torch::jit::Module root = make_module();
    for (int i = 0; i < n; i++) {
      TORCH_CHECK(names[i] != nullptr, "tensor ", i, " has no name");
      const std::string name(names[i]);
      std::vector<std::string> parts;
      size_t start = 0;
      while (true) {
        size_t dot = name.find('.', start);
        parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      for (const auto &p : parts) TORCH_CHECK(!p.empty(), "tensor name \"", name, "\" has an empty component");
      torch::jit::Module cur = root;
      for (size_t k = 0; k + 1 < parts.size(); k++) {
        if (cur.hasattr(parts[k])) {
          auto v = cur.attr(parts[k]);
          TORCH_CHECK(v.isObject(), "tensor name \"", name, "\": \"", parts[k], "\" is already a tensor, not a module");
          cur = torch::jit::Module(v.toObject());
        } else {
          torch::jit::Module child = make_module();
          cur.register_module(parts[k], child);
          cur = child;
        }
      }
      TORCH_CHECK(!cur.hasattr(parts.back()), "tensor name \"", name, "\" is given twice or is also a module");
      at::Tensor t = affgd::T(tensors[i]).detach().to(at::kCPU).contiguous();
      // Floating-point tensors become parameters; others (an int64 input_resolution, say) buffers.
      cur.register_parameter(parts.back(), t, /*is_buffer=*/!t.is_floating_point());
    }
    root.save(path);
  });
}

}  // extern "C"
