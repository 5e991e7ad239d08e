#include "plan.h"

namespace ifa_rt::detail {

std::vector<int64_t> bucket_batches(int64_t max_batch) {
  std::vector<int64_t> out;
  for (int64_t b = 1; b < max_batch; b *= 2) out.push_back(b);
  out.push_back(max_batch);
  return out;
}

std::vector<Bucket> make_buckets(const std::vector<Shape>& shapes, int64_t max_batch) {
  std::vector<Bucket> out;
  for (const Shape& s : shapes)
    for (int64_t b : bucket_batches(max_batch)) out.push_back({b, s.height, s.width});
  return out;
}

std::vector<Run> schedule(int64_t n, const std::vector<int64_t>& batches, bool pad) {
  std::vector<Run> runs;
  const int64_t max_batch = batches.back();
  int64_t first = 0;
  while (n - first >= max_batch) {
    runs.push_back({first, max_batch, max_batch});
    first += max_batch;
  }
  if (!pad) {
    // Largest planned batch that fits, repeatedly (batch 1 is always planned).
    while (first < n) {
      int64_t b = 1;
      for (int64_t c : batches)
        if (c <= n - first) b = c;
      runs.push_back({first, b, b});
      first += b;
    }
    return runs;
  }
  if (int64_t r = n - first; r > 0) {
    int64_t b = max_batch;
    for (int64_t c : batches)
      if (c >= r) {
        b = c;
        break;
      }
    runs.push_back({first, r, b});
  }
  return runs;
}

}  // namespace ifa_rt::detail
