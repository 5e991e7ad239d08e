#pragma once
// One queued request of the Batcher (batcher.cpp): the image, where its labels go, and the
// completion to call once, whatever happens.
#include <chrono>
#include <exception>

#include "ifa_rt/batcher.h"

namespace ifa_rt::detail {

using Clock = std::chrono::steady_clock;

struct Request {
  TensorView image;
  uint8_t* labels = nullptr;
  int64_t size = 0;
  Batcher::Callback done;
  Clock::time_point submitted;
};

// Requests batch together when the engine would treat them as one bucket: same dtype and
// shape (strides may differ; each image is staged on its own).
inline bool same_kind(const Request& a, const Request& b) {
  return a.image.dtype == b.image.dtype && a.image.shape == b.image.shape;
}

// Calls a completion; a throwing callback must not take the worker (and the rest of the
// batch) down with it.
inline void complete(Request& r, std::exception_ptr error) noexcept {
  try {
    r.done(std::move(error));
  } catch (...) {
  }
  r.done = nullptr;  // release what the callback holds now, on this thread
}

}  // namespace ifa_rt::detail
