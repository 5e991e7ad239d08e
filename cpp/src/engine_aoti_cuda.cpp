// The AOTInductor engine on CUDA: a `.pt2` package compiled for CUDA (ifa_rt.deploy.aoti
// compile_package(..., device="cuda")), one compiled model per planned bucket, each run by
// LibTorch's CUDA model container runner on the engine's own stream. The same Segmenter API
// as the CPU package engine (engine_aoti.cpp), which has already read and checked the package.
//
// Construction: the CUDA device; the plan resolved against the package's buckets; the
// package's TorchScript artifact as a CUDA engine with no buckets (it serves unplanned shapes
// and logits, which the package does not compile); per bucket the compiled model (loaded onto
// the engine's device) and a device input; per planned shape two exactly sized pinned staging
// slots; `warmup` runs per bucket with cuDNN benchmark on.
// A planned run: images into a pinned slot, on the stream the H2D copy of those n images, the
// model, (for a package of coarse logits) the upsample and first maximum on the device, the
// D2H copy of n images' labels, an event; then the labels are copied out. The model allocates
// its intermediates from torch's caching allocator on each run (stats() counts them); the
// runs are serialised by the Segmenter's mutex.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/inductor/aoti_runner/model_container_runner_cuda.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "aoti_common.h"
#include "artifact.h"
#include "cuda_capture.h"
#include "cuda_device_io.h"
#include "cuda_scopes.h"
#include "cuda_staging.h"
#include "engine.h"
#include "engine_common.h"
#include "options.h"
#include "plan.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

class AotiCudaEngine final : public Engine {
 public:
  AotiCudaEngine(const std::string& path, const Options& options, Metadata* metadata, const PackageContents& contents)
      : options_(options), package_(contents.info), device_(checked_cuda_device(options.device)) {
    const std::string where = "failed to load package '" + path + "': ";
    c10::cuda::CUDAGuard device_guard(device_);
    buckets_ = resolve_package_plan(package_, path, &options_);
    if (options_.precision == Precision::int8)
      throw InvalidArgument("Options: 'precision': expected 'fp32', 'fp16' or 'bf16' on CUDA, got 'int8' (package '" +
                            path + "')");
    check_plan(options_, *metadata);
    num_classes_ = metadata->num_classes;
    Options fallback_options = options_;
    fallback_options.shapes.clear();
    fallback_options.runtime = "auto";
    fallback_options.plan_logits = false;
    fallback_ = make_fallback_engine(contents.fallback_bytes, [&](const std::string& file) {
      Metadata fallback_meta;
      return make_cuda_engine(file, fallback_options, &fallback_meta);
    });
    options_.runtime = "aoti";
    allocator_tracked_ = c10::cuda::CUDACachingAllocator::name() == "native";
    own_stream_ = std::make_unique<OwnStream>(device_.index());
    stream_.emplace(own_stream_->stream());
    inputs_ready_.emplace();
    outputs_ready_.emplace();
    TorchScope scope(options_.threads);
    for (const Bucket& b : buckets_) {
      const std::string name = package_model_name(b);
      try {
        loaders_.push_back(
            std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, name, false, 1, device_.index()));
      } catch (const std::exception& e) {
        throw Error(where + "model '" + name + "': " + first_line(e.what()));
      }
      runners_.push_back(dynamic_cast<torch::inductor::AOTIModelContainerRunnerCuda*>(loaders_.back()->get_runner()));
      if (runners_.back() == nullptr)
        throw Error(where + "model '" + name + "': expected a model compiled for CUDA, got another device's");
      inputs_.push_back(at::zeros({b.batch, b.height, b.width, 3}, at::TensorOptions(at::kByte).device(device_)));
    }
    for (const Shape& s : options_.shapes)
      slots_.add_shape(options_.max_batch, s.height, s.width, options_.max_batch * s.height * s.width, 0);
    warm_up();
  }

  ~AotiCudaEngine() override {
    if (own_stream_) (void)cudaStreamSynchronize(own_stream_->stream().stream());
  }
  AotiCudaEngine(const AotiCudaEngine&) = delete;
  AotiCudaEngine& operator=(const AotiCudaEngine&) = delete;

  Plan plan() const override {
    Plan p;
    p.device = options_.device;
    p.precision = options_.precision;
    p.runtime = "aoti";
    p.buckets = buckets_;
    for (size_t i = 0; i < buckets_.size(); ++i)
      p.buffers.push_back({"input " + buckets_[i].name() + "x3", options_.device, "uint8", inputs_[i].sizes().vec(),
                           static_cast<int64_t>(inputs_[i].nbytes())});
    for (size_t k = 0; k < slots_.shapes(); ++k)
      for (size_t j = 0; j < slots_.shape(k).size(); ++j) {
        const Shape& s = options_.shapes[k];
        const Slot& slot = slots_.shape(k)[j];
        const std::string n = std::to_string(s.height) + "x" + std::to_string(s.width) + " slot " + std::to_string(j);
        for (const auto& [what, t] : {std::pair{"input ", &slot.host_in}, std::pair{"labels ", &slot.host_labels}})
          p.buffers.push_back({what + n + " (staging)", "cpu-pinned", std::string(c10::toString(t->scalar_type())),
                               t->sizes().vec(), static_cast<int64_t>(t->nbytes())});
      }
    p.buffers.push_back({"compiled models' constants + workspace (device memory reserved after warm-up)",
                         options_.device,
                         "mixed",
                         {},
                         reserved_after_warmup_});
    for (const BufferInfo& b : fallback_->plan().buffers)
      if (b.bytes > 0) p.buffers.push_back({"fallback " + b.name, b.device, b.dtype, b.shape, b.bytes});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    if (what == Output::logits || bucket >= buckets_.size()) {  // the package compiles labels only
      fallback_->run_unplanned(images, n, what, outs);
      return false;
    }
    TorchScope scope;
    CudnnTuneScope tune(true);  // the plan cache warm-up filled on this thread, else tuned once here
    c10::cuda::CUDAGuard device_guard(device_);
    const Bucket& b = buckets_[bucket];
    Slot* slot = slots_.acquire(shape_index(b));
    const AllocSnapshot before = device_allocations(device_.index());
    try {
      for (int64_t i = 0; i < n; ++i) slot->host_in.select(0, i).copy_(image_tensor(images[i]));
      at::Tensor host = slot->host_labels.narrow(0, 0, n * b.height * b.width).view({n, b.height, b.width});
      {
        c10::cuda::CUDAStreamGuard stream_guard(*stream_);
        inputs_[bucket].narrow(0, 0, n).copy_(slot->host_in.narrow(0, 0, n), /*non_blocking=*/true);
        host.copy_(labels_on_device(bucket).narrow(0, 0, n), /*non_blocking=*/true);
        slot->done->record(stream_->stream());
      }
      slot->done->synchronize();
      copy_out(host, n, Output::labels, outs);
    } catch (const std::exception& e) {
      (void)cudaStreamSynchronize(stream_->stream());  // queued copies may still use the slot
      slots_.release(slot);
      throw Error("Segmenter: forward failed on bucket " + b.name() + " (" + options_.device +
                  "): " + error_summary(e.what()));
    }
    slots_.release(slot);
    count_since(before);
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    fallback_->run_unplanned(images, n, what, outs);
  }

  bool run_device(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
                  void* stream) override {
    if (what == Output::logits || bucket >= buckets_.size()) {
      fallback_->run_device(kUnplanned, images, n, what, outs, stream);
      return false;
    }
    TorchScope scope;
    CudnnTuneScope tune(true);
    c10::cuda::CUDAGuard device_guard(device_);
    const auto caller = static_cast<cudaStream_t>(stream);
    const AllocSnapshot before = device_allocations(device_.index());
    try {
      inputs_ready_->order(caller, stream_->stream());  // the caller's work wrote the images
      c10::cuda::CUDAStreamGuard stream_guard(*stream_);
      stage_on_device(images, n, inputs_[bucket], device_);
      copy_out_on_device(labels_on_device(bucket), n, what, outs, device_);
      outputs_ready_->order(stream_->stream(), caller);  // the caller's later work sees them
    } catch (const std::exception& e) {
      ignore_errors([&] { outputs_ready_->order(stream_->stream(), caller); });
      (void)cudaGetLastError();
      throw Error("Segmenter: forward on device memory failed on bucket " + buckets_[bucket].name() + " (" +
                  options_.device + "): " + error_summary(e.what()));
    }
    count_since(before);
    return true;
  }

  int memory_device(const void* p) const override { return cuda_memory_device(p, device_); }

  AllocCounters counters() const override {
    if (!allocator_tracked_) return {-1, -1, 0, reserved_after_warmup_};
    const AllocCounters f = fallback_->counters();
    return {new_blocks_ + std::max<int64_t>(f.new_blocks, 0), new_bytes_ + std::max<int64_t>(f.new_bytes, 0), 0,
            reserved_after_warmup_};
  }

  double first_call_ms() const override { return first_call_ms_; }

  const Options& options() const { return options_; }

 private:
  size_t shape_index(const Bucket& b) const {
    for (size_t k = 0; k < options_.shapes.size(); ++k)
      if (options_.shapes[k].height == b.height && options_.shapes[k].width == b.width) return k;
    throw Error("Segmenter: bucket " + b.name() + " has no planned shape");
  }

  void count_since(const AllocSnapshot& before) {
    const AllocSnapshot after = device_allocations(device_.index());
    new_blocks_ += after.count - before.count;
    new_bytes_ += after.bytes - before.bytes;
  }

  // Bucket i's model on its input, on the current stream: labels uint8 [B,H,W] (contiguous),
  // finished on the device from coarse logits when that is what the package's models return.
  at::Tensor labels_on_device(size_t i) {
    const Bucket& b = buckets_[i];
    std::vector<at::Tensor> outs = runners_[i]->run_with_cuda_stream({inputs_[i]}, *stream_);
    if (outs.size() != 1) throw Error("forward: expected 1 output, got " + std::to_string(outs.size()));
    const at::Tensor& out = outs[0];
    if (package_.output == "labels") {
      check_result(out, Output::labels, b.batch, b.height, b.width, num_classes_);
      return out.contiguous();
    }
    if (out.dim() != 4 || out.size(0) != b.batch || out.size(1) != num_classes_ || !out.is_floating_point())
      throw Error("forward: expected coarse logits float32 [" + std::to_string(b.batch) + "," +
                  std::to_string(num_classes_) + ",h,w], got " + std::string(c10::toString(out.scalar_type())) + " " +
                  shape_string(out.sizes().vec()));
    // As the model's own tail: bilinear with align_corners=True, then the first maximum.
    at::Tensor fine = at::upsample_bilinear2d(out.to(at::kFloat), {b.height, b.width}, /*align_corners=*/true);
    return std::get<1>(fine.max(1)).to(at::kByte).contiguous();
  }

  void warm_up() {
    TorchScope scope;
    CudnnTuneScope tune(true);
    c10::cuda::device_synchronize();  // the loads and zero-filled inputs ran on other streams
    c10::cuda::CUDAStreamGuard stream_guard(*stream_);
    for (size_t i = 0; i < buckets_.size(); ++i) {
      inputs_[i].copy_(at::randint(0, 256, inputs_[i].sizes(), at::TensorOptions(at::kByte)), true);
      for (int k = 0; k < options_.warmup; ++k) {
        auto t0 = Clock::now();
        try {
          labels_on_device(i);
          stream_->synchronize();
        } catch (const std::exception& e) {
          throw Error("Segmenter: warm-up of bucket " + buckets_[i].name() + " on " + options_.device +
                      " failed: " + error_summary(e.what()));
        }
        if (i == 0 && k == 0) first_call_ms_ = ms_since(t0);
      }
    }
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index());
    reserved_after_warmup_ =
        stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
  }

  Options options_;
  PackageInfo package_;
  at::Device device_;
  int64_t num_classes_ = 0;
  std::vector<Bucket> buckets_;
  std::unique_ptr<Engine> fallback_;
  std::unique_ptr<OwnStream> own_stream_;  // outlives the models' work and the buffers
  std::optional<c10::cuda::CUDAStream> stream_;
  std::optional<Event> inputs_ready_, outputs_ready_;
  std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> loaders_;
  std::vector<torch::inductor::AOTIModelContainerRunnerCuda*> runners_;  // owned by loaders_
  std::vector<at::Tensor> inputs_;
  StagingSlots slots_;
  int64_t new_blocks_ = 0, new_bytes_ = 0, reserved_after_warmup_ = 0;
  bool allocator_tracked_ = true;
  double first_call_ms_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_aoti_cuda_engine(const std::string& path, const Options& options, Metadata* metadata,
                                              const PackageContents& package, Options* resolved) {
  auto engine = std::make_unique<AotiCudaEngine>(path, options, metadata, package);
  *resolved = engine->options();
  return engine;
}

}  // namespace ifa_rt::detail
