// Warm-up and capture of the CUDA engine's buckets (cuda_graphs.h).
#include "cuda_graphs.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>

#include <mutex>

#include "cuda_capture.h"
#include "cuda_scopes.h"
#include "engine_common.h"
#include "options.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

at::Tensor call(torch::jit::Module& m, const at::Tensor& input) {
  return m.forward(std::vector<c10::IValue>{input}).toTensor();
}

}  // namespace

void CudaGraphs::allocate(const Bucket& b, size_t shape) {
  CudaBucket cb;
  cb.bucket = b;
  cb.shape = shape;
  cb.dev_in = at::zeros({b.batch, b.height, b.width, 3}, at::TensorOptions(at::kByte).device(device_));
  buckets_.push_back(std::move(cb));
}

void CudaGraphs::build(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream) {
  std::string tuned_error;
  {
    CudnnTuneScope tune(true);
    warm_up(forward, logits, stream);
    tuned_error = capture(forward, logits, stream);
  }
  if (tuned_error.empty()) return;
  // Autotuning should leave nothing to time inside a capture; if a capture failed anyway,
  // cuDNN's heuristics (no timed trials at all) are the configuration torch's own graph
  // capture relies on.
  drop_graphs();
  tuned_ = false;
  std::string plain_error;
  {
    CudnnTuneScope tune(false);
    warm_up(forward, logits, stream);
    plain_error = capture(forward, logits, stream);
  }
  if (!plain_error.empty())
    throw Error(plain_error + " (rebuilt with cuDNN benchmark off; with it on: " + tuned_error + ")");
}

void CudaGraphs::warm_up(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream) {
  TorchScope scope;
  Tf32Scope tf32(options_.tf32);
  FuserScope fuser(options_.fuser);
  // Setup (moving weights, freezing, zero-filled buffers) ran on the current stream, not on
  // `stream`: finish it before work on `stream` reads those tensors.
  c10::cuda::device_synchronize();
  c10::cuda::CUDAStreamGuard stream_guard(stream);
  bool first = first_call_ms_ == 0;
  for (auto& cb : buckets_) {
    cb.dev_in.copy_(at::randint(0, 256, cb.dev_in.sizes(), at::TensorOptions(at::kByte)), true);
    try {
      for (int k = 0; k < options_.warmup; ++k) {
        auto t0 = Clock::now();
        call(forward, cb.dev_in);
        if (options_.plan_logits) call(logits, cb.dev_in);
        stream.synchronize();
        if (first) first_call_ms_ = ms_since(t0);
        first = false;
      }
    } catch (const std::exception& e) {
      throw Error("Segmenter: warm-up of bucket " + cb.bucket.name() + " on " + options_.device +
                  " failed: " + error_summary(e.what()));
    }
  }
}

std::string CudaGraphs::capture(torch::jit::Module& forward, torch::jit::Module& logits, c10::cuda::CUDAStream stream) {
  TorchScope scope;
  Tf32Scope tf32(options_.tf32);
  FuserScope fuser(options_.fuser);
  std::lock_guard<std::mutex> one_capture(capture_mutex());
  c10::cuda::device_synchronize();  // as torch.cuda.graph does: nothing pending before capture
  // A capture takes fresh device memory and cannot free cached blocks meanwhile: return what
  // is merely cached (other engines' freed buffers, released graph pools) to the device first.
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDAStreamGuard stream_guard(stream);
  pool_ = at::cuda::graph_pool_handle();
  for (auto& cb : buckets_) {
    try {
      cb.dev_labels = capture_one(cb.labels_graph, forward, cb.dev_in, stream);
      if (options_.plan_logits) cb.dev_logits = capture_one(cb.logits_graph, logits, cb.dev_in, stream);
    } catch (const std::exception& e) {
      return "Segmenter: CUDA graph capture of bucket " + cb.bucket.name() + " on " + options_.device +
             " failed (is every op capturable?); the capture was ended and its memory pool released: " +
             error_summary(e.what());
    }
    check_outputs(cb);
  }
  stream.synchronize();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index());
  reserved_after_capture_ =
      stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
  return "";
}

// Captures one call of `method` into `graph` (thread-local capture mode: CUDA work on other
// threads neither fails nor invalidates it). On failure the capture is ended, the partial
// graph destroyed and this graph's use of the pool released, so the process's CUDA state
// (the stream, the device and pinned caching allocators) is as before, then the error
// propagates.
at::Tensor CudaGraphs::capture_one(std::unique_ptr<at::cuda::CUDAGraph>& graph, torch::jit::Module& method,
                                   const at::Tensor& input, c10::cuda::CUDAStream stream) {
  graph = std::make_unique<at::cuda::CUDAGraph>();
  try {
    graph->capture_begin(pool_, cudaStreamCaptureModeThreadLocal);
    at::Tensor out = call(method, input);
    graph->capture_end();
    return out;
  } catch (...) {
    abandon_capture(*graph, stream.stream(), device_.index(), pool_);
    graph.reset();
    throw;
  }
}

void CudaGraphs::check_outputs(const CudaBucket& cb) const {
  const Bucket& b = cb.bucket;
  // The staging copies are flat memcpys of the outputs: gaps would make torch copy through
  // temporaries (allocating, and synchronously) on every call.
  for (const at::Tensor* out : {&cb.dev_labels, &cb.dev_logits})
    if (out->defined() && !out->is_non_overlapping_and_dense())
      throw Error("Segmenter: bucket " + b.name() + ": expected dense graph outputs, got strides " +
                  shape_string(out->strides().vec()) + " for sizes " + shape_string(out->sizes().vec()));
  if (cb.dev_labels.scalar_type() != at::kByte ||
      cb.dev_labels.sizes().vec() != std::vector<int64_t>{b.batch, b.height, b.width})
    throw Error("Segmenter: bucket " + b.name() + ": forward: expected uint8 " +
                shape_string({b.batch, b.height, b.width}) + ", got " +
                std::string(c10::toString(cb.dev_labels.scalar_type())) + " " +
                shape_string(cb.dev_labels.sizes().vec()));
  if (cb.logits_graph &&
      (cb.dev_logits.scalar_type() != at::kFloat ||
       cb.dev_logits.sizes().vec() != std::vector<int64_t>{b.batch, num_classes_, b.height, b.width}))
    throw Error("Segmenter: bucket " + b.name() + ": logits: expected float32 " +
                shape_string({b.batch, num_classes_, b.height, b.width}) + ", got " +
                std::string(c10::toString(cb.dev_logits.scalar_type())) + " " +
                shape_string(cb.dev_logits.sizes().vec()));
}

// Outputs first: they live in the pool that the graphs' destruction releases.
void CudaGraphs::drop_graphs() {
  for (auto& cb : buckets_) {
    cb.dev_labels.reset();
    cb.dev_logits.reset();
    cb.labels_graph.reset();
    cb.logits_graph.reset();
  }
}

}  // namespace ifa_rt::detail
