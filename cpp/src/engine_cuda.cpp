// The CUDA engine: one CUDA graph per planned bucket, replayed on the engine's own stream.
//
// Construction (one error per phase, each naming the bucket):
//   1. check a device is present ("no CUDA device"); load + validate the artifact; cast to the
//      precision, NHWC weights (the input is NHWC, so cuDNN runs NHWC and would otherwise
//      convert NCHW weights on every call, inside every graph); move to the device; freeze
//      `forward` and `logits` into fully inlined modules;
//   2. create the engine's own stream (not one of torch's shared pool streams, which Python's
//      torch.cuda.Stream() also hands out); allocate per bucket a pinned host input, a
//      device input, a pinned host output (labels; logits too when planned);
//   3. warm up every bucket `warmup` times on the stream (the profiling executor specialises
//      and fuses on the 2nd call);
//   4. capture each bucket's graph(s) on the stream into one private memory pool
//      (graph_pool_handle), one capture at a time in the process, in thread-local capture
//      mode; a failed capture is ended and its pool use released before the error is thrown;
//      the captured outputs are the device output buffers;
//   5. replay each bucket once and record the caching allocator's statistics.
// A call on a planned bucket then: copies images into pinned staging (host), H2D async on the
// stream, replays, D2H async into pinned output, synchronises the stream, copies out. No
// caching-allocator call happens (checked with getDeviceStats around every planned run).
// Replays are serialised by the Segmenter's mutex, so buckets may share the graph pool.
// TF32 is off unless Options::tf32: cuDNN's default would let fp32 differ from CPU fp32.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/script.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

#include "artifact.h"
#include "cuda_scopes.h"
#include "engine.h"
#include "engine_common.h"
#include "options.h"
#include "plan.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

struct AllocSnapshot {
  int64_t count = 0, bytes = 0;
};

// Device-wide: CUDA has no per-stream allocation statistics, so another engine or Python
// torch allocating on the same device during a call shows up here too. A planned call itself
// allocates nothing (its work is a graph replay and copies into preallocated buffers).
// Under PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync these statistics are not kept at all,
// and the engine reports -1 ("not tracked") instead of a reassuring 0.
AllocSnapshot device_allocations(int device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return {stats.allocation[agg].allocated, stats.allocated_bytes[agg].allocated};
}

// One capture at a time in the process: with thread-local capture mode another thread's CUDA
// work no longer breaks a capture, but two engines capturing into the caching allocator at
// once would still interleave their pools' bookkeeping.
std::mutex& capture_mutex() {
  static std::mutex m;
  return m;
}

struct CudaBucket {
  Bucket bucket;
  at::Tensor host_in, dev_in;          // pinned uint8 [B,H,W,3], device copy
  at::Tensor dev_labels, host_labels;  // captured output uint8 [B,H,W], pinned copy
  at::Tensor dev_logits, host_logits;  // captured output float [B,C,H,W], pinned copy
  std::unique_ptr<at::cuda::CUDAGraph> labels_graph, logits_graph;
};

class CudaEngine final : public Engine {
 public:
  CudaEngine(const std::string& path, const Options& options, Metadata* metadata)
      : options_(options), device_index_(parse_device(options.device).index) {
    const int count = static_cast<int>(at::cuda::device_count());
    if (count == 0)
      throw Error("Segmenter: option 'device': expected an available CUDA device, got '" + options.device +
                  "': no CUDA device");
    if (device_index_ >= count)
      throw Error("Segmenter: option 'device': expected cuda:0..cuda:" + std::to_string(count - 1) + ", got '" +
                  options.device + "'");
    device_ = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index_));
    c10::cuda::CUDAGuard device_guard(device_);
    torch::jit::Module module = load_artifact(path, metadata);
    check_plan(options_, *metadata);
    num_classes_ = metadata->num_classes;
    TorchScope scope(options_.threads);
    Tf32Scope tf32(options_.tf32);
    try {
      module.to(scalar_type(options_.precision));
      for (auto p : module.parameters())
        if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
      module.to(device_);
      configure_cache(module, options_);
      forward_ = freeze_method(module, "forward");
      logits_ = freeze_method(module, "logits");
    } catch (const c10::Error& e) {
      throw Error("Segmenter: failed to prepare artifact '" + path + "' on " + options.device + ": " +
                  first_line(e.what_without_backtrace()));
    }
    allocator_tracked_ = c10::cuda::CUDACachingAllocator::name() == "native";
    own_stream_ = std::make_unique<OwnStream>(device_.index());
    stream_.emplace(own_stream_->stream());
    for (const Bucket& b : make_buckets(options_.shapes, options_.max_batch)) allocate(b);
    warm_up();
    capture();
    for (auto& cb : buckets_) replay(cb, Output::labels);  // settle, then start counting
  }

  Plan plan() const override {
    Plan p;
    p.device = options_.device;
    p.precision = options_.precision;
    p.runtime = "cuda-graph";
    auto add = [&](const std::string& name, const at::Tensor& t, const std::string& dev) {
      if (t.defined())
        p.buffers.push_back({name, dev, std::string(c10::toString(t.scalar_type())), t.sizes().vec(),
                             static_cast<int64_t>(t.nbytes())});
    };
    for (const auto& cb : buckets_) {
      p.buckets.push_back(cb.bucket);
      const std::string n = cb.bucket.name();
      add("input " + n + "x3 (staging)", cb.host_in, "cpu-pinned");
      add("input " + n + "x3", cb.dev_in, options_.device);
      add("labels " + n + " (graph output)", cb.dev_labels, options_.device);
      add("labels " + n + " (staging)", cb.host_labels, "cpu-pinned");
      add("logits " + n + " (graph output)", cb.dev_logits, options_.device);
      add("logits " + n + " (staging)", cb.host_logits, "cpu-pinned");
    }
    // The private pool holds every captured intermediate: the reserved bytes after capture.
    p.buffers.push_back({"graph pool + weights (device memory reserved after capture)",
                         options_.device,
                         "mixed",
                         {},
                         reserved_after_capture_});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    CudaBucket& cb = buckets_[bucket];
    if (what == Output::logits && !cb.logits_graph) {
      run_unplanned(images, n, what, outs);
      return false;
    }
    TorchScope scope;  // no thread count: intra-op threads do not matter on CUDA
    c10::cuda::CUDAGuard device_guard(device_);
    const AllocSnapshot before = device_allocations(device_index_);
    try {
      for (int64_t i = 0; i < n; ++i) cb.host_in.select(0, i).copy_(image_tensor(images[i]));
      const at::Tensor& host_out = replay(cb, what);
      copy_out(host_out, n, what, outs);
    } catch (const std::exception& e) {  // c10::Error from a copy or the replay: one line
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") +
                  " replay failed on bucket " + cb.bucket.name() + " (" + options_.device +
                  "): " + error_summary(e.what()));
    }
    const AllocSnapshot after = device_allocations(device_index_);
    new_blocks_ += after.count - before.count;
    new_bytes_ += after.bytes - before.bytes;
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    TorchScope scope;  // no thread count: intra-op threads do not matter on CUDA
    Tf32Scope tf32(options_.tf32);
    c10::cuda::CUDAGuard device_guard(device_);
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    const int64_t h = images[0].height, w = images[0].width;
    at::Tensor out;
    try {
      at::Tensor input = at::empty({n, h, w, 3}, at::TensorOptions(at::kByte).pinned_memory(true));
      for (int64_t i = 0; i < n; ++i) input.select(0, i).copy_(image_tensor(images[i]));
      std::vector<c10::IValue> args{input.to(device_, /*non_blocking=*/true)};
      out = (what == Output::labels ? forward_ : logits_).forward(std::move(args)).toTensor();
    } catch (const c10::Error& e) {
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") + " failed on input " +
                  shape_string({n, h, w, 3}) + " (" + options_.device +
                  "): " + error_summary(e.what_without_backtrace()));
    } catch (const std::exception& e) {  // torch::jit::JITException: raised inside the graph
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") + " failed on input " +
                  shape_string({n, h, w, 3}) + " (" + options_.device + "): " + error_summary(e.what()));
    }
    // Checked before copying: a graph whose output shape depends on the pixels must not
    // write past the caller's buffers (the CPU engine's finding 1, docs/reliability.md).
    check_result(out, what, n, h, w, num_classes_);
    copy_out(out.to(at::kCPU), n, what, outs);  // converts dtype and layout on the way
  }

  AllocCounters counters() const override {
    if (!allocator_tracked_) return {-1, -1, 0, reserved_after_capture_};
    return {new_blocks_, new_bytes_, 0, reserved_after_capture_};
  }

  double first_call_ms() const override { return first_call_ms_; }

 private:
  void allocate(const Bucket& b) {
    CudaBucket cb;
    cb.bucket = b;
    auto pinned = at::TensorOptions(at::kByte).pinned_memory(true);
    cb.host_in = at::zeros({b.batch, b.height, b.width, 3}, pinned);
    cb.dev_in = at::zeros({b.batch, b.height, b.width, 3}, at::TensorOptions(at::kByte).device(device_));
    buckets_.push_back(std::move(cb));  // pinned outputs follow the captured outputs' strides
  }

  at::Tensor call(torch::jit::Module& m, const at::Tensor& input) {
    return m.forward(std::vector<c10::IValue>{input}).toTensor();
  }

  void warm_up() {
    TorchScope scope;
    Tf32Scope tf32(options_.tf32);
    // Setup (moving weights, freezing, zero-filled buffers) ran on the current stream, not on
    // stream_: finish it before work on stream_ reads those tensors.
    c10::cuda::device_synchronize();
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    bool first = true;
    for (auto& cb : buckets_) {
      cb.dev_in.copy_(at::randint(0, 256, cb.dev_in.sizes(), at::TensorOptions(at::kByte)), true);
      try {
        for (int k = 0; k < options_.warmup; ++k) {
          auto t0 = Clock::now();
          call(forward_, cb.dev_in);
          if (options_.plan_logits) call(logits_, cb.dev_in);
          stream_->synchronize();
          if (first) first_call_ms_ = ms_since(t0);
          first = false;
        }
      } catch (const std::exception& e) {
        throw Error("Segmenter: warm-up of bucket " + cb.bucket.name() + " on " + options_.device +
                    " failed: " + error_summary(e.what()));
      }
    }
  }

  void capture() {
    TorchScope scope;
    Tf32Scope tf32(options_.tf32);
    std::lock_guard<std::mutex> one_capture(capture_mutex());
    c10::cuda::device_synchronize();  // as torch.cuda.graph does: nothing pending before capture
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    pool_ = at::cuda::graph_pool_handle();
    for (auto& cb : buckets_) {
      try {
        cb.dev_labels = capture_one(cb.labels_graph, forward_, cb.dev_in);
        if (options_.plan_logits) cb.dev_logits = capture_one(cb.logits_graph, logits_, cb.dev_in);
      } catch (const std::exception& e) {
        throw Error("Segmenter: CUDA graph capture of bucket " + cb.bucket.name() + " on " + options_.device +
                    " failed (is every op capturable?); the capture was ended and its memory pool " +
                    "released: " + error_summary(e.what()));
      }
      const Bucket& b = cb.bucket;
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
      // Same strides as the device outputs (channels-last logits stay so): each D2H copy is
      // one flat cudaMemcpyAsync with no device temporary.
      cb.host_labels = pinned_like(cb.dev_labels);
      if (cb.logits_graph) cb.host_logits = pinned_like(cb.dev_logits);
    }
    stream_->synchronize();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index());
    reserved_after_capture_ =
        stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
  }

  // Captures one call of `method` into `graph` (thread-local capture mode: CUDA work on other
  // threads neither fails nor invalidates it). On failure the capture is ended, the partial
  // graph destroyed and this graph's use of the pool released, so the process's CUDA state
  // (the stream, the caching allocator) is as before, then the error propagates.
  at::Tensor capture_one(std::unique_ptr<at::cuda::CUDAGraph>& graph, torch::jit::Module& method,
                         const at::Tensor& input) {
    graph = std::make_unique<at::cuda::CUDAGraph>();
    graph->capture_begin(pool_, cudaStreamCaptureModeThreadLocal);
    try {
      at::Tensor out = call(method, input);
      graph->capture_end();
      return out;
    } catch (...) {
      abandon_capture();
      graph.reset();
      throw;
    }
  }

  // Only a capture still open is ours to end: when capture_end() itself failed, it had
  // already ended the capture and the allocation, and the graph's reset() releases its pool.
  void abandon_capture() noexcept {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    const bool open =
        cudaStreamIsCapturing(stream_->stream(), &status) == cudaSuccess && status != cudaStreamCaptureStatusNone;
    if (open) {
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(stream_->stream(), &partial) == cudaSuccess && partial != nullptr)
        cudaGraphDestroy(partial);
    }
    (void)cudaGetLastError();  // the failed capture's error must not surface in a later call
    if (!open) return;
    try {  // what capture_end() would have done for this graph's share of the pool
      c10::cuda::CUDACachingAllocator::endAllocateToPool(device_.index(), pool_);
      c10::cuda::CUDACachingAllocator::releasePool(device_.index(), pool_);
    } catch (...) {
    }
  }

  // H2D, replay, D2H on the engine's stream; returns the pinned host output.
  const at::Tensor& replay(CudaBucket& cb, Output what) {
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    cb.dev_in.copy_(cb.host_in, /*non_blocking=*/true);
    if (what == Output::labels) {
      cb.labels_graph->replay();
      cb.host_labels.copy_(cb.dev_labels, /*non_blocking=*/true);
    } else {
      cb.logits_graph->replay();
      cb.host_logits.copy_(cb.dev_logits, /*non_blocking=*/true);  // float -> float (or cast)
    }
    stream_->synchronize();
    return what == Output::labels ? cb.host_labels : cb.host_logits;
  }

  static at::Tensor pinned_like(const at::Tensor& t) {
    return at::empty_strided(t.sizes(), t.strides(), at::TensorOptions(t.scalar_type()).pinned_memory(true));
  }

  Options options_;
  int device_index_ = 0;
  at::Device device_{at::kCUDA, 0};
  int64_t num_classes_ = 0;
  torch::jit::Module forward_, logits_;
  std::unique_ptr<OwnStream> own_stream_;  // outlives the buckets' graphs and buffers
  std::optional<c10::cuda::CUDAStream> stream_;
  c10::MempoolId_t pool_{0, 0};
  std::vector<CudaBucket> buckets_;
  int64_t new_blocks_ = 0, new_bytes_ = 0, reserved_after_capture_ = 0;
  bool allocator_tracked_ = true;
  double first_call_ms_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const std::string& path, const Options& options, Metadata* metadata) {
  return std::make_unique<CudaEngine>(path, options, metadata);
}

}  // namespace ifa_rt::detail
