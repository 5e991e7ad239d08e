// Labels from coarse logits (upsample_labels.h) against the direct per-pixel computation:
// the skip of pixels whose four source cells share a leading class never changes a label,
// ties keep the first class, NaN wins, infinities go through the direct path.
#include <cmath>
#include <random>

#include "check.h"
#include "upsample_labels.h"

using ifa_rt::detail::UpsampleLabels;

namespace {

// ATen's align_corners=True source coordinate, index pair and weights of one output index.
void coordinate(int64_t in, int64_t out, int64_t i, int64_t* i0, int64_t* i1, float* w0, float* w1) {
  const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  const float real = scale * static_cast<float>(i);
  *i0 = std::min(static_cast<int64_t>(std::floor(real)), in - 1);
  const float lambda = std::min(std::max(real - static_cast<float>(*i0), 0.0f), 1.0f);
  *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
  *w0 = 1.0f - lambda;
  *w1 = lambda;
}

std::vector<uint8_t> direct(const std::vector<float>& l, int64_t c, int64_t h, int64_t w, int64_t H, int64_t W) {
  std::vector<uint8_t> out(static_cast<size_t>(H * W));
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      int64_t y0, y1, x0, x1;
      float wy0, wy1, wx0, wx1;
      coordinate(h, H, y, &y0, &y1, &wy0, &wy1);
      coordinate(w, W, x, &x0, &x1, &wx0, &wx1);
      float best = 0;
      int64_t index = 0;
      for (int64_t k = 0; k < c; ++k) {
        const float* p = l.data() + k * h * w;
        volatile float top = p[y0 * w + x0] * wx0;  // volatile: no fused multiply-add here
        volatile float top2 = p[y0 * w + x1] * wx1;
        volatile float bottom = p[y1 * w + x0] * wx0;
        volatile float bottom2 = p[y1 * w + x1] * wx1;
        volatile float t = top + top2, b = bottom + bottom2;
        volatile float a = t * wy0, z = b * wy1;
        const float v = a + z;
        if (k == 0 || (!std::isnan(best) && (v > best || std::isnan(v)))) {
          best = v;
          index = k;
        }
      }
      out[static_cast<size_t>(y * W + x)] = static_cast<uint8_t>(index);
    }
  return out;
}

std::vector<uint8_t> fast(const std::vector<float>& l, int64_t c, int64_t h, int64_t w, int64_t H, int64_t W) {
  UpsampleLabels tail(c, h, w, H, W);
  tail.prepare(l.data());
  std::vector<uint8_t> out(static_cast<size_t>(H * W));
  for (int64_t y = 0; y < H; y += 7) tail.rows(l.data(), y, std::min(H, y + 7), out.data() + y * W);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    std::mt19937 rng(7);
    struct Case {
      int64_t c, h, w, H, W;
    };
    for (const Case& s : {Case{11, 90, 120, 360, 480}, Case{19, 33, 65, 129, 257}, Case{5, 8, 12, 32, 48},
                          Case{3, 1, 1, 4, 4}, Case{4, 5, 1, 17, 3}, Case{2, 6, 6, 1, 1}}) {
      std::vector<float> l(static_cast<size_t>(s.c * s.h * s.w));
      // Smooth class fields (large uniform regions, as real logits have) plus noise.
      std::normal_distribution<float> noise(0.0f, 0.3f);
      for (int64_t k = 0; k < s.c; ++k)
        for (int64_t y = 0; y < s.h; ++y)
          for (int64_t x = 0; x < s.w; ++x)
            l[static_cast<size_t>((k * s.h + y) * s.w + x)] =
                4.0f * std::sin(0.3f * static_cast<float>(k + 1) * static_cast<float>(x + 2 * y) / 10.0f) + noise(rng);
      CHECK(fast(l, s.c, s.h, s.w, s.H, s.W) == direct(l, s.c, s.h, s.w, s.H, s.W));

      // Exact ties between classes everywhere: the first class wins, as in max(1).indices.
      std::vector<float> tied = l;
      for (int64_t i = 0; i < s.h * s.w; ++i) tied[static_cast<size_t>((s.c - 1) * s.h * s.w + i)] = tied[i] + 0.0f;
      CHECK(fast(tied, s.c, s.h, s.w, s.H, s.W) == direct(tied, s.c, s.h, s.w, s.H, s.W));

      // Near-ties a few ulps apart, NaN and infinities in some cells.
      std::vector<float> odd = l;
      std::uniform_int_distribution<int64_t> cell(0, s.h * s.w - 1);
      for (int k = 0; k < 5; ++k) {
        const int64_t i = cell(rng);
        odd[static_cast<size_t>(i + s.h * s.w)] = std::nextafter(odd[static_cast<size_t>(i)], INFINITY);
      }
      odd[static_cast<size_t>(cell(rng))] = NAN;
      odd[static_cast<size_t>((s.c - 1) * s.h * s.w + cell(rng))] = INFINITY;
      odd[static_cast<size_t>(cell(rng))] = -INFINITY;
      CHECK(fast(odd, s.c, s.h, s.w, s.H, s.W) == direct(odd, s.c, s.h, s.w, s.H, s.W));
    }
  });
}
