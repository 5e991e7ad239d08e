#pragma once
// RAII pieces of the CUDA engine (engine_cuda.cpp): the TF32 policy around its work, the
// stream it owns and the events that order it against its callers' streams. Include only from TUs compiled against a
// CUDA torch.
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <optional>

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
