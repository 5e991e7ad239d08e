// The CUDA engine: one CUDA graph per planned bucket, replayed on the engine's own stream.
//
// Construction (one error per phase, each naming the bucket):
//   1. check a device is present ("no CUDA device"); load + validate the artifact; cast to the
//      precision, NHWC weights (the input is NHWC, so cuDNN runs NHWC and would otherwise
//      convert NCHW weights on every call, inside every graph); move to the device; freeze
//      `forward` and `logits` into fully inlined modules;
//   2. create the engine's own stream (not one of torch's shared pool streams, which Python's
//      torch.cuda.Stream() also hands out); allocate per bucket a device input;
//   3. warm up every bucket `warmup` times on the stream (the profiling executor specialises
//      and fuses on the 2nd call, with the TensorExpr fuser as Options::fuser says) with cuDNN
//      benchmark on, so each convolution's fastest algorithm is timed and cached;
//   4. capture each bucket's graph(s) on the stream into one private memory pool
//      (graph_pool_handle), one capture at a time in the process, in thread-local capture
//      mode, after returning the device's merely cached memory; a failed capture is ended and
//      its pool use released, then 3-4 are redone once with benchmark off (cuda_graphs.cpp);
//      the captured outputs are the device output buffers;
//   5. allocate per planned shape two pinned staging slots (input, labels, logits when
//      planned, each for max_batch images, sized exactly); replay each bucket once.
// A run on a planned bucket is then started (Segmenter's lock held): take a free slot of its
// shape, copy the images into its pinned input (host), queue on the stream the H2D copy of
// those n images, the replay, the D2H copy of their n outputs into the slot's pinned output
// (a padded bucket's other rows keep earlier inputs, whose outputs nobody reads) and an
// event; and finished (lock free): wait for the event, copy out, free the slot. With two
// slots, one run is staged on the host
// while the other's copies and replay run on the device: consecutive calls and batches
// overlap (the Batcher runs two workers over a CUDA engine). The stream orders the device
// buffers: a run's H2D copy into the bucket's input follows the previous replay. No
// caching-allocator call happens (checked with getDeviceStats around every planned run).
// A device-memory call (run_device) never touches the host: its stream waits for the caller's
// stream, copies the images device to device into the bucket's input, replays, copies the
// outputs into the caller's device buffers, and the caller's stream waits for that; the call
// returns once queued, as a torch op does.
// Replays are serialised by the Segmenter's mutex, so buckets may share the graph pool.
// TF32 is off unless Options::tf32: cuDNN's default would let fp32 differ from CPU fp32.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/script.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "artifact.h"
#include "cuda_capture.h"
#include "cuda_device_io.h"
#include "cuda_graphs.h"
#include "cuda_scopes.h"
#include "cuda_staging.h"
#include "engine.h"
#include "engine_common.h"
#include "options.h"
#include "plan.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

class CudaEngine final : public Engine {
 public:
  CudaEngine(const std::string& path, const Options& options, Metadata* metadata)
      : options_(options), device_(checked_cuda_device(options.device)) {
    c10::cuda::CUDAGuard device_guard(device_);
    torch::jit::Module module = load_artifact(path, metadata);
    check_plan(options_, *metadata);
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
    inputs_ready_.emplace();  // on device_ (the guard above): events belong to a device
    outputs_ready_.emplace();
    graphs_ = std::make_unique<CudaGraphs>(options_, device_, metadata->num_classes);
    num_classes_ = metadata->num_classes;
    const std::vector<Bucket> buckets = make_buckets(options_.shapes, options_.max_batch);
    const size_t per_shape = bucket_batches(options_.max_batch).size();
    for (size_t i = 0; i < buckets.size(); ++i) graphs_->allocate(buckets[i], i / per_shape);
    graphs_->build(forward_, logits_, *stream_);
    allocate_staging();
    for (size_t i = 0; i < graphs_->buckets().size(); ++i) settle(i);  // then start counting
  }

  // Device calls return with work queued that reads the buckets' buffers; those are freed
  // before the stream (declared first), so wait for it here.
  ~CudaEngine() override {
    if (own_stream_) (void)cudaStreamSynchronize(own_stream_->stream().stream());
  }
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

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
    for (const auto& cb : graphs_->buckets()) {
      p.buckets.push_back(cb.bucket);
      const std::string n = cb.bucket.name();
      add("input " + n + "x3", cb.dev_in, options_.device);
      add("labels " + n + " (graph output)", cb.dev_labels, options_.device);
      add("logits " + n + " (graph output)", cb.dev_logits, options_.device);
    }
    // Pinned slots are allocated at exactly these sizes (cuda_staging.h: pinned_exact).
    for (size_t k = 0; k < slots_.shapes(); ++k)
      for (size_t j = 0; j < slots_.shape(k).size(); ++j) {
        const Shape& s = options_.shapes[k];
        const Slot& slot = slots_.shape(k)[j];
        const std::string n = std::to_string(s.height) + "x" + std::to_string(s.width) + " slot " + std::to_string(j);
        add("input " + n + " (staging)", slot.host_in, "cpu-pinned");
        add("labels " + n + " (staging)", slot.host_labels, "cpu-pinned");
        add("logits " + n + " (staging)", slot.host_logits, "cpu-pinned");
      }
    // The private pool holds every captured intermediate: the reserved bytes after capture.
    p.buffers.push_back({std::string("graph pool + weights (device memory reserved after capture") +
                             (graphs_->tuned() ? ")" : "; cuDNN benchmark off after a failed capture)"),
                         options_.device,
                         "mixed",
                         {},
                         graphs_->reserved_after_capture()});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    std::unique_ptr<PendingRun> pending;
    const bool planned = start(bucket, images, n, what, outs, &pending);
    if (pending) pending->finish();
    return planned;
  }

  bool start(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
             std::unique_ptr<PendingRun>* pending) override {
    pending->reset();
    CudaBucket& cb = graphs_->buckets()[bucket];
    if (what == Output::logits && !cb.logits_graph) {
      run_unplanned(images, n, what, outs);
      return false;
    }
    TorchScope scope;  // no thread count: intra-op threads do not matter on CUDA
    c10::cuda::CUDAGuard device_guard(device_);
    auto run = std::make_unique<CudaRun>(this, slots_.acquire(cb.shape), cb, n, what, outs);
    const AllocSnapshot before = device_allocations(device_.index());
    try {
      for (int64_t i = 0; i < n; ++i) run->slot()->host_in.select(0, i).copy_(image_tensor(images[i]));
      enqueue(cb, *run->slot(), n, what);
    } catch (const std::exception& e) {  // the run's destructor waits for the stream, frees the slot
      throw Error(replay_failed(cb, what, e.what()));
    }
    const AllocSnapshot after = device_allocations(device_.index());
    new_blocks_ += after.count - before.count;
    new_bytes_ += after.bytes - before.bytes;
    *pending = std::move(run);
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    TorchScope scope;  // no thread count: intra-op threads do not matter on CUDA
    Tf32Scope tf32(options_.tf32);
    FuserScope fuser(options_.fuser);  // a new shape may be optimised (and fused) by this call
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

  bool run_device(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
                  void* stream) override {
    const bool planned =
        bucket != kUnplanned && (what == Output::labels || graphs_->buckets()[bucket].logits_graph != nullptr);
    const int64_t h = images[0].height, w = images[0].width;
    TorchScope scope;
    c10::cuda::CUDAGuard device_guard(device_);
    const auto caller = static_cast<cudaStream_t>(stream);
    const AllocSnapshot before = device_allocations(device_.index());
    try {
      inputs_ready_->order(caller, stream_->stream());  // the caller's work wrote the images
      c10::cuda::CUDAStreamGuard stream_guard(*stream_);
      if (planned) {
        CudaBucket& cb = graphs_->buckets()[bucket];
        stage_on_device(images, n, cb.dev_in, device_);
        if (what == Output::labels) {
          cb.labels_graph->replay();
          copy_out_on_device(cb.dev_labels, n, what, outs, device_);
        } else {
          cb.logits_graph->replay();
          copy_out_on_device(cb.dev_logits, n, what, outs, device_);
        }
      } else {
        Tf32Scope tf32(options_.tf32);  // the unplanned path runs kernels chosen now
        FuserScope fuser(options_.fuser);
        at::Tensor input = at::empty({n, h, w, 3}, at::TensorOptions(at::kByte).device(device_));
        stage_on_device(images, n, input, device_);
        at::Tensor out = (what == Output::labels ? forward_ : logits_).forward({input}).toTensor();
        check_result(out, what, n, h, w, num_classes_);
        copy_out_on_device(out, n, what, outs, device_);
      }
      outputs_ready_->order(stream_->stream(), caller);  // the caller's later work sees them
    } catch (const Error&) {
      order_after_failure(caller);
      throw;
    } catch (const std::exception& e) {
      order_after_failure(caller);
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") +
                  " on device memory failed on input " + shape_string({n, h, w, 3}) + " (" + options_.device +
                  "): " + error_summary(e.what()));
    }
    if (planned) {
      const AllocSnapshot after = device_allocations(device_.index());
      new_blocks_ += after.count - before.count;
      new_bytes_ += after.bytes - before.bytes;
    }
    return planned;
  }

  // After a failed device call: the caller's stream still waits for whatever the engine had
  // queued that may read the caller's images.
  void order_after_failure(cudaStream_t caller) noexcept {
    ignore_errors([&] { outputs_ready_->order(stream_->stream(), caller); });
    (void)cudaGetLastError();
  }

  int memory_device(const void* p) const override { return cuda_memory_device(p, device_); }

  AllocCounters counters() const override {
    if (!allocator_tracked_) return {-1, -1, 0, graphs_->reserved_after_capture()};
    return {new_blocks_, new_bytes_, 0, graphs_->reserved_after_capture()};
  }

  double first_call_ms() const override { return graphs_->first_call_ms(); }

 private:
  // A run queued on the engine's stream; holds its staging slot until finished.
  class CudaRun final : public PendingRun {
   public:
    CudaRun(CudaEngine* engine, Slot* slot, const CudaBucket& bucket, int64_t n, Output what, void* const* outs)
        : engine_(engine), slot_(slot), bucket_(&bucket), what_(what), outs_(outs, outs + n) {}
    ~CudaRun() override {
      if (slot_ == nullptr) return;
      // Not finished (an error, or an earlier run of its call failed): its queued copies may
      // still use the slot's memory.
      (void)cudaStreamSynchronize(engine_->stream_->stream());
      engine_->slots_.release(slot_);
    }
    CudaRun(const CudaRun&) = delete;
    CudaRun& operator=(const CudaRun&) = delete;

    Slot* slot() const { return slot_; }

    void finish() override {
      Slot* slot = std::exchange(slot_, nullptr);
      try {
        slot->done->synchronize();
        const at::Tensor& out = what_ == Output::labels ? bucket_->dev_labels : bucket_->dev_logits;
        copy_out(staged(what_ == Output::labels ? slot->host_labels : slot->host_logits, out),
                 static_cast<int64_t>(outs_.size()), what_, outs_.data());
      } catch (const std::exception& e) {
        engine_->slots_.release(slot);
        throw Error(engine_->replay_failed(*bucket_, what_, e.what()));
      }
      engine_->slots_.release(slot);
    }

   private:
    CudaEngine* engine_;
    Slot* slot_;
    const CudaBucket* bucket_;
    Output what_;
    std::vector<void*> outs_;  // copied: the caller's array may not outlive start()
  };

  std::string replay_failed(const CudaBucket& cb, Output what, const std::string& why) const {
    return std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") + " replay failed on bucket " +
           cb.bucket.name() + " (" + options_.device + "): " + error_summary(why);
  }

  // Two slots per planned shape, each sized for the largest of its buckets' outputs.
  void allocate_staging() {
    for (size_t k = 0; k < options_.shapes.size(); ++k) {
      int64_t labels = 0, logits = 0;
      for (const CudaBucket& cb : graphs_->buckets())
        if (cb.shape == k) {
          labels = std::max(labels, span(cb.dev_labels));
          if (cb.dev_logits.defined()) logits = std::max(logits, span(cb.dev_logits));
        }
      const Shape& s = options_.shapes[k];
      slots_.add_shape(options_.max_batch, s.height, s.width, labels, logits);
    }
  }

  // Queues on the stream: H2D of the n images in the slot, the replay, D2H of their outputs
  // into the slot, its event.
  void enqueue(CudaBucket& cb, Slot& slot, int64_t n, Output what) {
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    cb.dev_in.narrow(0, 0, n).copy_(slot.host_in.narrow(0, 0, n), /*non_blocking=*/true);
    const bool labels = what == Output::labels;
    (labels ? cb.labels_graph : cb.logits_graph)->replay();
    const at::Tensor& out = labels ? cb.dev_labels : cb.dev_logits;
    at::Tensor host = staged(labels ? slot.host_labels : slot.host_logits, out);
    if (batch_outermost(out))  // the n images' outputs are one block: copy only those
      host.narrow(0, 0, n).copy_(out.narrow(0, 0, n), /*non_blocking=*/true);
    else
      host.copy_(out, /*non_blocking=*/true);
    slot.done->record(stream_->stream());
  }

  // One replay of bucket i through a slot, waited for: settles the stream and the allocator
  // before the counters start.
  void settle(size_t i) {
    CudaBucket& cb = graphs_->buckets()[i];
    Slot* slot = slots_.acquire(cb.shape);
    try {
      enqueue(cb, *slot, cb.bucket.batch, Output::labels);
      slot->done->synchronize();
    } catch (...) {
      slots_.release(slot);
      throw;
    }
    slots_.release(slot);
  }

  Options options_;
  at::Device device_;
  int64_t num_classes_ = 0;
  torch::jit::Module forward_, logits_;
  std::unique_ptr<OwnStream> own_stream_;  // outlives the buckets' graphs and buffers
  std::optional<c10::cuda::CUDAStream> stream_;
  std::optional<Event> inputs_ready_, outputs_ready_;  // device calls: caller -> engine -> caller
  std::unique_ptr<CudaGraphs> graphs_;
  StagingSlots slots_;
  int64_t new_blocks_ = 0, new_bytes_ = 0;
  bool allocator_tracked_ = true;
};

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const std::string& path, const Options& options, Metadata* metadata) {
  return std::make_unique<CudaEngine>(path, options, metadata);
}

}  // namespace ifa_rt::detail
