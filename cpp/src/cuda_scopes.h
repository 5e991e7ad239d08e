#pragma once
// RAII pieces of the CUDA engines (engine_cuda.cpp, engine_aoti_cuda.cpp): the device they
// run on, the TF32, cuDNN and fuser policies around their work, the stream each owns and the
// events that order it against its callers' streams. Include only from TUs compiled against
// a CUDA torch.
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/jit/codegen/fuser/interface.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>

#include <optional>
#include <string>

#include "options.h"

namespace ifa_rt::detail {

// cuDNN/cuBLAS TF32 for the engine's work, restoring the process's setting afterwards (the
// flags are process-wide; the graphs keep the kernels chosen while capturing).
class Tf32Scope {
 public:
  explicit Tf32Scope(bool allow)
      : cudnn_(at::globalContext().allowTF32CuDNN()), cublas_(at::globalContext().allowTF32CuBLAS()) {
    at::globalContext().setAllowTF32CuDNN(allow);
    at::globalContext().setAllowTF32CuBLAS(allow);
  }
  ~Tf32Scope() {
    at::globalContext().setAllowTF32CuDNN(cudnn_);
    at::globalContext().setAllowTF32CuBLAS(cublas_);
  }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool cudnn_, cublas_;
};

// The CUDA device an engine's `device` option names; Error when there is none or too few.
inline at::Device checked_cuda_device(const std::string& device) {
  const int index = parse_device(device).index;
  const int count = static_cast<int>(at::cuda::device_count());
  if (count == 0)
    throw Error("Segmenter: option 'device': expected an available CUDA device, got '" + device + "': no CUDA device");
  if (index >= count)
    throw Error("Segmenter: option 'device': expected cuda:0..cuda:" + std::to_string(count - 1) + ", got '" + device +
                "'");
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

// cuDNN autotuning for warm-up and capture (process-wide flags, restored afterwards). With
// benchmark on, warm-up times the candidate algorithms and caches the fastest per convolution
// in the capturing thread's plan cache, so the capture that follows hits that cache instead
// of running timed trials (which synchronise, and would fail the capture). Off: the same with
// heuristic choices. Deterministic mode is off either way: it excludes algorithms.
class CudnnTuneScope {
 public:
  explicit CudnnTuneScope(bool benchmark)
      : benchmark_(at::globalContext().benchmarkCuDNN()), deterministic_(at::globalContext().deterministicCuDNN()) {
    at::globalContext().setBenchmarkCuDNN(benchmark);
    at::globalContext().setDeterministicCuDNN(false);
  }
  ~CudnnTuneScope() {
    at::globalContext().setBenchmarkCuDNN(benchmark_);
    at::globalContext().setDeterministicCuDNN(deterministic_);
  }
  CudnnTuneScope(const CudnnTuneScope&) = delete;
  CudnnTuneScope& operator=(const CudnnTuneScope&) = delete;

 private:
  bool benchmark_, deterministic_;
};

// Options::fuser for TorchScript calls on CUDA: the TensorExpr fuser and its GPU backend set
// for the scope (process-wide flags, restored afterwards). The profiling executor fuses when
// it optimises a graph (the 2nd warm-up call, or an unplanned shape's), so every call runs
// inside one: a host that changed the flags cannot change what the engine compiles.
class FuserScope {
 public:
  explicit FuserScope(const std::string& fuser)
      : enabled_(torch::jit::tensorExprFuserEnabled()), gpu_(torch::jit::canFuseOnGPU()) {
    const bool on = fuser != "off";  // "auto" = "on": torch's default on CUDA, pinned
    torch::jit::setTensorExprFuserEnabled(on);
    torch::jit::overrideCanFuseOnGPU(on);
  }
  ~FuserScope() {
    torch::jit::setTensorExprFuserEnabled(enabled_);
    torch::jit::overrideCanFuseOnGPU(gpu_);
  }
  FuserScope(const FuserScope&) = delete;
  FuserScope& operator=(const FuserScope&) = delete;

 private:
  bool enabled_, gpu_;
};

// A stream of the engine's own, destroyed with it (after its work has finished).
class OwnStream {
 public:
  explicit OwnStream(c10::DeviceIndex device) {
    int least = 0, greatest = 0;
    C10_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    C10_CUDA_CHECK(cudaStreamCreateWithPriority(&raw_, cudaStreamNonBlocking, greatest));
    stream_.emplace(c10::cuda::getStreamFromExternal(raw_, device));
  }
  ~OwnStream() {
    if (raw_ == nullptr) return;
    (void)cudaStreamSynchronize(raw_);
    (void)cudaStreamDestroy(raw_);
  }
  OwnStream(const OwnStream&) = delete;
  OwnStream& operator=(const OwnStream&) = delete;
  c10::cuda::CUDAStream stream() const { return *stream_; }

 private:
  cudaStream_t raw_ = nullptr;
  std::optional<c10::cuda::CUDAStream> stream_;
};

// A CUDA event without timing (cheaper to record and wait on), created on the current device.
class Event {
 public:
  Event() { C10_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  /// Marks what `stream` has queued so far.
  void record(cudaStream_t stream) { C10_CUDA_CHECK(cudaEventRecord(event_, stream)); }
  /// Makes `waiter` wait for the recorded work.
  void block(cudaStream_t waiter) { C10_CUDA_CHECK(cudaStreamWaitEvent(waiter, event_, 0)); }
  /// Makes `waiter` wait for what `producer` has queued so far.
  void order(cudaStream_t producer, cudaStream_t waiter) {
    record(producer);
    block(waiter);
  }
  /// Blocks the calling thread until the recorded work is done.
  void synchronize() { C10_CUDA_CHECK(cudaEventSynchronize(event_)); }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace ifa_rt::detail
