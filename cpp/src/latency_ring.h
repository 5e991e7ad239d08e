#pragma once
// Per-bucket latency of a Segmenter: the last calls' times, summarised into percentiles.
#include <algorithm>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

// The last `capacity` latencies of one bucket, preallocated.
class LatencyRing {
 public:
  explicit LatencyRing(size_t capacity = 4096) : values_(capacity) {}
  void push(double ms) {
    values_[count_ % values_.size()] = ms;
    ++count_;
    sum_ += ms;
  }
  BucketStats summary(const Bucket& bucket) const {
    BucketStats s;
    s.bucket = bucket;
    s.calls = static_cast<int64_t>(count_);
    if (count_ == 0) return s;
    std::vector<double> v(values_.begin(), values_.begin() + std::min(count_, values_.size()));
    std::sort(v.begin(), v.end());
    auto pct = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
    s.mean_ms = sum_ / static_cast<double>(count_);
    s.p50_ms = pct(0.5);
    s.p90_ms = pct(0.9);
    s.p99_ms = pct(0.99);
    s.min_ms = v.front();
    s.max_ms = v.back();
    return s;
  }

 private:
  std::vector<double> values_;
  size_t count_ = 0;
  double sum_ = 0;
};

}  // namespace ifa_rt::detail
