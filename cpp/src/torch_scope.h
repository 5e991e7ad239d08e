#pragma once
// Thread-local execution settings applied on the calling thread inside every call (load,
// warm-up and inference): InferenceMode, the graph optimizer on, the profiling executor with
// torch's default profiling depth and fusion strategy, and the intra-op thread count.
// Include only from TUs that already include torch.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

namespace ifa_rt::detail {

class TorchScope {
 public:
  explicit TorchScope(int threads = 0) : optimizer_(true) {
    // Process-wide atomics; set every time so a host application cannot leave them off.
    torch::jit::getExecutorMode() = true;
    torch::jit::getProfilingMode() = true;
    // warmup = 2 is enough only with one profiled run and a static-first fusion strategy:
    // a host that changed either would move profiling and compilation into a CUDA capture
    // or the first served call.
    torch::jit::getNumProfiledRuns() = 1;
    static torch::jit::FusionStrategy defaults{{torch::jit::FusionBehavior::STATIC, 2},
                                               {torch::jit::FusionBehavior::DYNAMIC, 10}};
    torch::jit::setFusionStrategy(defaults);
    if (threads > 0) {
      previous_threads_ = at::get_num_threads();
      if (previous_threads_ != threads)
        at::set_num_threads(threads);
      else
        previous_threads_ = 0;
    }
  }
  ~TorchScope() {
    if (previous_threads_ > 0) at::set_num_threads(previous_threads_);
  }
  TorchScope(const TorchScope&) = delete;
  TorchScope& operator=(const TorchScope&) = delete;

 private:
  c10::InferenceMode inference_;
  torch::jit::GraphOptimizerEnabledGuard optimizer_;
  int previous_threads_ = 0;
};

}  // namespace ifa_rt::detail
