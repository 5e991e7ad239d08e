#pragma once
// CUDA graph capture that cannot hurt the process (engine_cuda.cpp): one capture at a time,
// and a failed capture undone in the stream and in both caching allocators. Include only
// from TUs compiled against a CUDA torch.
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include <mutex>
#include <type_traits>
#include <utility>

namespace ifa_rt::detail {

// One capture at a time in the process: with thread-local capture mode another thread's CUDA
// work no longer breaks a capture, but two engines capturing into the caching allocator at
// once would still interleave their pools' bookkeeping.
inline std::mutex& capture_mutex() {
  static std::mutex m;
  return m;
}

// Runs f, ignoring what it throws (cleanup after a failure, where the state is uncertain).
template <class F>
void ignore_errors(F&& f) noexcept {
  try {
    f();
  } catch (...) {
  }
}

// The pinned-memory side of a graph pool: torch versions whose CUDAGraph also records pinned
// host allocations to the pool have these HostAllocator calls; older ones have neither.
template <class A, class = void>
struct HasHostPools : std::false_type {};
template <class A>
struct HasHostPools<A, std::void_t<decltype(std::declval<A&>().end_allocate_to_pool(c10::MempoolId_t{})),
                                   decltype(std::declval<A&>().release_pool(c10::MempoolId_t{}))>> : std::true_type {};

// Ends the pinned allocator's recording to `pool` (dropping its filter, which points at a
// graph about to be destroyed) and releases the failed graph's use of it.
template <class A>
void end_host_pool(A* allocator, c10::MempoolId_t pool) {
  if constexpr (HasHostPools<A>::value) {
    ignore_errors([&] { allocator->end_allocate_to_pool(pool); });
    ignore_errors([&] { allocator->release_pool(pool); });
  }
}

// Undoes a failed capture_begin..capture_end. capture_begin made both caching allocators
// (device, and pinned host memory where torch has pool support for it) record to the pool
// through a filter that points at `graph`, and took one use of the pool in each. When
// capture_end() got as far as marking the capture ended (an instantiation failed), the
// graph's reset() releases those uses itself. Otherwise: end the stream's capture if still
// open, end both recordings (capture_end may have ended them before failing: that is
// ignored), and release the graph's use of the pool exactly once, since reset() will not.
inline void abandon_capture(at::cuda::CUDAGraph& graph, cudaStream_t stream, c10::DeviceIndex device,
                            c10::MempoolId_t pool) noexcept {
  bool ended = false;
  try {
    (void)graph.pool();  // throws unless capture_end() marked the capture ended
    ended = true;
  } catch (...) {
  }
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t partial = nullptr;
    if (cudaStreamEndCapture(stream, &partial) == cudaSuccess && partial != nullptr) cudaGraphDestroy(partial);
  }
  (void)cudaGetLastError();  // the failed capture's error must not surface in a later call
  if (ended) return;
  ignore_errors([&] { c10::cuda::CUDACachingAllocator::endAllocateToPool(device, pool); });
  ignore_errors([&] { c10::cuda::CUDACachingAllocator::releasePool(device, pool); });
  ignore_errors([&] { end_host_pool(at::getHostAllocator(at::kCUDA), pool); });
}

}  // namespace ifa_rt::detail
