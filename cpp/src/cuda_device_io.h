#pragma once
// Caller device memory in the CUDA engine's device-memory calls (engine_cuda.cpp): images
// staged into a graph input and results copied out, device to device, on the current stream.
// Include only from TUs compiled against a CUDA torch.
#include <ATen/ATen.h>

#include "engine.h"
#include "engine_common.h"

namespace ifa_rt::detail {

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
