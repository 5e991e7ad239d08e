#pragma once
// The planned runs of one Segmenter call that an engine started and has not yet finished
// (CUDA: their copies and replay are queued; see Engine::start).
#include <array>
#include <chrono>
#include <memory>

#include "engine.h"

namespace ifa_rt::detail {

// A planned run started by the engine and not yet finished (its device work is queued).
struct Started {
  std::unique_ptr<PendingRun> run;
  size_t bucket = 0;
  std::chrono::steady_clock::time_point t0;
};

// The runs of one call in flight, oldest first: at most two (the engine's staging slots per
// shape), held inline so that a call allocates nothing for them.
class InFlight {
 public:
  static constexpr size_t kMax = 2;
  size_t size() const { return size_; }
  bool full() const { return size_ == kMax; }
  void push(Started s) { runs_[size_++] = std::move(s); }
  Started pop_oldest() {
    Started oldest = std::move(runs_[0]);
    for (size_t i = 1; i < size_; ++i) runs_[i - 1] = std::move(runs_[i]);
    --size_;
    return oldest;
  }
  Started* begin() { return runs_.data(); }
  Started* end() { return runs_.data() + size_; }

 private:
  std::array<Started, kMax> runs_;
  size_t size_ = 0;
};

}  // namespace ifa_rt::detail
