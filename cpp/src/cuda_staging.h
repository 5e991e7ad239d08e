#pragma once
// Pinned host staging of the CUDA engines (engine_cuda.cpp, engine_aoti_cuda.cpp): two slots per planned input
// shape, so that one run is staged and copied out on the host while the other's copies and
// replay run on the device. Include only from TUs compiled against a CUDA torch.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda_scopes.h"

namespace ifa_rt::detail {

// Pinned host staging of one run of a planned shape (for up to max_batch images).
struct Slot {
  at::Tensor host_in;                   // uint8 [max_batch,H,W,3]
  at::Tensor host_labels, host_logits;  // flat; viewed with the strides of a bucket's outputs
  std::unique_ptr<Event> done;          // recorded after the run's D2H copy
  bool busy = false;
};

// A graph output's pinned copy in a slot: the output's own sizes and strides over the slot's
// flat memory, so that each D2H copy is one flat cudaMemcpyAsync with no device temporary.
inline at::Tensor staged(const at::Tensor& flat, const at::Tensor& output) {
  return flat.as_strided(output.sizes(), output.strides());
}

// True when image i of a [B,...] tensor is the i-th of B equal blocks, so that the first n
// images are one flat block (a batch dimension with the largest stride).
inline bool batch_outermost(const at::Tensor& t) {
  return t.dim() > 0 && t.stride(0) * t.size(0) == t.numel() && t.is_non_overlapping_and_dense();
}

// Elements a tensor's strides reach (what `staged` needs of a flat buffer).
inline int64_t span(const at::Tensor& t) {
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return last + 1;
}

// Pinned host memory of exactly `elements` elements of `dtype`, zero-filled and freed with
// the tensor. Not torch's pinned caching allocator: it rounds every block up to a power of
// two (R50 1024x2048 logits for batch 8: 1.27 GB -> 2 GiB per slot), which the plan would not
// show.
inline at::Tensor pinned_exact(at::IntArrayRef sizes, at::ScalarType dtype) {
  int64_t elements = 1;
  for (int64_t d : sizes) elements *= d;
  const size_t bytes = static_cast<size_t>(elements) * c10::elementSize(dtype);
  void* data = nullptr;
  C10_CUDA_CHECK(cudaHostAlloc(&data, bytes > 0 ? bytes : 1, cudaHostAllocDefault));
  std::memset(data, 0, bytes);
  return at::from_blob(
      data, sizes, [](void* p) { (void)cudaFreeHost(p); }, at::TensorOptions(dtype));
}

// The slots of every planned shape, handed to one run at a time.
class StagingSlots {
 public:
  // Two slots for a shape, in the order of Options::shapes: inputs for max_batch images of
  // height x width, outputs of `labels` uint8 and `logits` float elements (0: none planned).
  // Events are created on the current device.
  void add_shape(int64_t max_batch, int64_t height, int64_t width, int64_t labels, int64_t logits) {
    shapes_.emplace_back();
    for (Slot& slot : shapes_.back()) {
      slot.host_in = pinned_exact({max_batch, height, width, 3}, at::kByte);
      slot.host_labels = pinned_exact({labels}, at::kByte);
      if (logits > 0) slot.host_logits = pinned_exact({logits}, at::kFloat);
      slot.done = std::make_unique<Event>();
    }
  }

  // A free slot of shape k; waits while both are in use (by runs that other threads are
  // finishing: the Segmenter keeps at most one of its own in flight when it starts one).
  Slot* acquire(size_t k) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      for (Slot& s : shapes_[k])
        if (!s.busy) {
          s.busy = true;
          return &s;
        }
      freed_.wait(lock);
    }
  }

  void release(Slot* slot) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slot->busy = false;
    }
    freed_.notify_all();
  }

  size_t shapes() const { return shapes_.size(); }
  const std::array<Slot, 2>& shape(size_t k) const { return shapes_[k]; }

 private:
  std::vector<std::array<Slot, 2>> shapes_;
  std::mutex mutex_;
  std::condition_variable freed_;
};

}  // namespace ifa_rt::detail
