#pragma once
// The CUDA engine's planned buckets (engine_cuda.cpp): per bucket a device input and the
// CUDA graphs captured over it, all in one private memory pool. Building them is warm-up then
// capture, with cuDNN autotuning on; if a capture fails, the whole build is redone once with
// autotuning off. Include only from TUs compiled against a CUDA torch.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// One planned bucket: its graph input, the graphs' outputs and the graphs.
struct CudaBucket {
  Bucket bucket;
  size_t shape = 0;                   ///< index of its input shape in Options::shapes
  at::Tensor dev_in;                  ///< uint8 [B,H,W,3], the graphs' input
  at::Tensor dev_labels, dev_logits;  ///< captured outputs: uint8 [B,H,W], float [B,C,H,W]
  std::unique_ptr<at::cuda::CUDAGraph> labels_graph, logits_graph;
};

/// The buckets of one engine and the graph pool they share.
class CudaGraphs {
 public:
  CudaGraphs(const Options& options, at::Device device, int64_t num_classes)
      : options_(options), device_(device), num_classes_(num_classes) {}
  CudaGraphs(const CudaGraphs&) = delete;
  CudaGraphs& operator=(const CudaGraphs&) = delete;

  /// Adds bucket `b` of input shape `shape` (an index into Options::shapes) with its input.
  void allocate(const Bucket& b, size_t shape);

  /// Warms up and captures every bucket on `stream` (the modules are frozen `forward` and
  /// `logits`): with cuDNN benchmark on; after a failed capture, once more with it off. Throws
  /// Error naming the bucket, with both attempts' errors when both fail.
  void build(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream);

  std::vector<CudaBucket>& buckets() { return buckets_; }
  const std::vector<CudaBucket>& buckets() const { return buckets_; }
  /// Wall time of the first warm-up call (the profiling run), milliseconds.
  double first_call_ms() const { return first_call_ms_; }
  /// The device's reserved bytes after capture (graph pool, weights and anything else there).
  int64_t reserved_after_capture() const { return reserved_after_capture_; }
  /// True when the graphs were captured with cuDNN benchmark on (the rebuild turns it off).
  bool tuned() const { return tuned_; }

 private:
  void warm_up(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream);
  // Returns the error of the first bucket whose capture failed (empty: all captured).
  std::string capture(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream);
  at::Tensor capture_one(std::unique_ptr<at::cuda::CUDAGraph>& graph, torch::jit::Module& method,
                         const at::Tensor& input, c10::cuda::CUDAStream stream);
  void check_outputs(const CudaBucket& cb) const;
  void drop_graphs();

  Options options_;
  at::Device device_;
  int64_t num_classes_ = 0;
  c10::MempoolId_t pool_{0, 0};
  std::vector<CudaBucket> buckets_;
  double first_call_ms_ = 0;
  int64_t reserved_after_capture_ = 0;
  bool tuned_ = true;
};

}  // namespace ifa_rt::detail
