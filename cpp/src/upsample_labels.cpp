// Built with -ffp-contract=off (cpp/CMakeLists.txt): every product and sum rounds on its own,
// as in ATen's vectorized upsample kernel, so no fused multiply-add changes a near-tie.
#include "upsample_labels.h"

#include <algorithm>
#include <cmath>

namespace ifa_rt::detail {

UpsampleLabels::UpsampleLabels(int64_t classes, int64_t height, int64_t width, int64_t out_height, int64_t out_width)
    : classes_(classes),
      height_(height),
      width_(width),
      out_height_(out_height),
      out_width_(out_width),
      ys_(axis(height, out_height)),
      xs_(axis(width, out_width)),
      leader_(static_cast<size_t>(height * width)),
      top_(static_cast<size_t>(height * width)),
      second_(static_cast<size_t>(height * width)),
      finite_(static_cast<size_t>(height * width)) {}

// ATen's compute_indices_weights_linear for align_corners=True: source = scale * dst in
// float, index = floor (clamped), lambda clamped to [0, 1], the right neighbour clamped.
UpsampleLabels::Axis UpsampleLabels::axis(int64_t in, int64_t out) {
  Axis a;
  const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  for (int64_t i = 0; i < out; ++i) {
    const float real = scale * static_cast<float>(i);
    const int64_t index = std::min(static_cast<int64_t>(std::floor(real)), in - 1);
    const float lambda = std::min(std::max(real - static_cast<float>(index), 0.0f), 1.0f);
    a.i0.push_back(index);
    a.i1.push_back(index + (index < in - 1 ? 1 : 0));
    a.w0.push_back(1.0f - lambda);
    a.w1.push_back(lambda);
  }
  return a;
}

void UpsampleLabels::prepare(const float* logits) {
  const int64_t plane = height_ * width_;
  // Class-major passes (contiguous, vectorisable): each cell's top value, its class, the
  // runner-up, the largest finite magnitude, and whether any value is NaN or infinite.
  top_.assign(logits, logits + plane);
  second_.assign(static_cast<size_t>(plane), -INFINITY);
  std::fill(leader_.begin(), leader_.end(), int16_t{0});
  std::fill(finite_.begin(), finite_.end(), uint8_t{1});
  float largest = 0;
  for (int64_t c = 0; c < classes_; ++c) {
    const float* l = logits + c * plane;
    for (int64_t i = 0; i < plane; ++i) {
      const float v = l[i];
      const bool ok = v - v == 0.0f;  // false for NaN and infinities
      finite_[i] &= static_cast<uint8_t>(ok);
      largest = std::max(largest, ok ? std::fabs(v) : 0.0f);
      if (c == 0) continue;
      const bool lead = v > top_[i];
      second_[i] = lead ? top_[i] : std::max(second_[i], v);
      top_[i] = lead ? v : top_[i];
      leader_[i] = lead ? static_cast<int16_t>(c) : leader_[i];
    }
  }
  const float margin = 1e-5f * (1.0f + largest);
  for (int64_t i = 0; i < plane; ++i)
    if (!finite_[i] || !(top_[i] - second_[i] > margin)) leader_[i] = -1;
}

uint8_t UpsampleLabels::full(const float* logits, int64_t y, int64_t x) const {
  const int64_t plane = height_ * width_;
  const int64_t r0 = ys_.i0[y] * width_, r1 = ys_.i1[y] * width_;
  const int64_t c0 = xs_.i0[x], c1 = xs_.i1[x];
  const float wy0 = ys_.w0[y], wy1 = ys_.w1[y], wx0 = xs_.w0[x], wx1 = xs_.w1[x];
  float best = 0;
  int64_t index = 0;
  for (int64_t c = 0; c < classes_; ++c) {
    const float* l = logits + c * plane;
    const float top = l[r0 + c0] * wx0 + l[r0 + c1] * wx1;
    const float bottom = l[r1 + c0] * wx0 + l[r1 + c1] * wx1;
    const float v = top * wy0 + bottom * wy1;
    // max(1).indices: the first maximum; a NaN wins and stays.
    if (c == 0 || (!std::isnan(best) && (v > best || std::isnan(v)))) {
      best = v;
      index = c;
    }
  }
  return static_cast<uint8_t>(index);
}

void UpsampleLabels::rows(const float* logits, int64_t begin, int64_t end, uint8_t* labels) const {
  for (int64_t y = begin; y < end; ++y) {
    const int16_t* top = leader_.data() + ys_.i0[y] * width_;
    const int16_t* bottom = leader_.data() + ys_.i1[y] * width_;
    uint8_t* out = labels + (y - begin) * out_width_;
    for (int64_t x = 0; x < out_width_; ++x) {
      const int64_t c0 = xs_.i0[x], c1 = xs_.i1[x];
      const int16_t k = top[c0];
      out[x] =
          k >= 0 && top[c1] == k && bottom[c0] == k && bottom[c1] == k ? static_cast<uint8_t>(k) : full(logits, y, x);
    }
  }
}

}  // namespace ifa_rt::detail
