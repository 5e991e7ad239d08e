#pragma once
// Caller device memory in the CUDA engines' device-memory calls (engine_cuda.cpp,
// engine_aoti_cuda.cpp): where a pointer lives, images staged into a bucket's input and
// results copied out, device to device, on the current stream; and the device allocator's
// counts around a call. Include only from TUs compiled against a CUDA torch.
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include "engine.h"
#include "engine_common.h"

namespace ifa_rt::detail {

/// Device allocations so far (count and bytes).
struct AllocSnapshot {
  int64_t count = 0, bytes = 0;
};

// Device-wide: CUDA has no per-stream allocation statistics, so another engine or Python
// torch allocating on the same device during a call shows up here too. A planned graph call
// itself allocates nothing (its work is a replay and copies into preallocated buffers).
// Under PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync these statistics are not kept at all,
// and the engines report -1 ("not tracked") instead of a reassuring 0.
inline AllocSnapshot device_allocations(c10::DeviceIndex device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return {stats.allocation[agg].allocated, stats.allocated_bytes[agg].allocated};
}

/// Engine::memory_device for an engine on `device`.
inline int cuda_memory_device(const void* p, at::Device device) {
  c10::cuda::CUDAGuard device_guard(device);  // no context made on device 0 for a cuda:N engine
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    (void)cudaGetLastError();  // not an error of the engine's: the pointer is not CUDA's
    return kHostMemory;
  }
  if (attributes.type == cudaMemoryTypeManaged) return kManagedMemory;
  return attributes.type == cudaMemoryTypeDevice ? attributes.device : kHostMemory;
}

// Caller device memory as a tensor (no copy). The target device is given, so torch neither
// asks the driver where the pointer lives nor rejects managed memory first touched elsewhere
// (the Segmenter checked the pointer already).
inline at::Tensor device_blob(void* data, at::IntArrayRef sizes, at::OptionalIntArrayRef strides, at::ScalarType dtype,
                              at::Device device) {
  return at::for_blob(data, sizes)
      .strides(strides)
      .target_device(device)
      .options(at::TensorOptions(dtype).device(device))
      .make_tensor();
}

// Copies n caller images into the first n slots of `input`: one copy when they are one
// contiguous batch.
inline void stage_on_device(const ImageRef* images, int64_t n, const at::Tensor& input, at::Device device) {
  if (consecutive(images, n)) {
    const ImageRef& im = images[0];
    input.narrow(0, 0, n).copy_(
        device_blob(const_cast<uint8_t*>(im.data), {n, im.height, im.width, 3}, {}, at::kByte, device),
        /*non_blocking=*/true);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const ImageRef& im = images[i];
    input.select(0, i).copy_(device_blob(const_cast<uint8_t*>(im.data), {im.height, im.width, 3},
                                         {im.stride_h, im.stride_w, im.stride_c}, at::kByte, device),
                             /*non_blocking=*/true);
  }
}

// Image i of a [B,...] device result into the caller's contiguous device buffer outs[i]
// (uint8 labels [H,W] or float32 logits [C,H,W], converting layout and dtype on the way).
inline void copy_out_on_device(const at::Tensor& result, int64_t n, Output what, void* const* outs, at::Device device) {
  const auto dtype = what == Output::labels ? at::kByte : at::kFloat;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor src = result.select(0, i);
    device_blob(outs[i], src.sizes(), {}, dtype, device).copy_(src, /*non_blocking=*/true);
  }
}

}  // namespace ifa_rt::detail
