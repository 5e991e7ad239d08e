#pragma once
// Buckets and batching (pure logic, no torch).
//
// A plan is the cross product of batch sizes {1, 2, 4, .., max_batch} (powers of two below
// max_batch, plus max_batch itself) and the planned input shapes. A group of n same-shaped
// images is served as:
//   1. while n >= max_batch: one run of bucket (max_batch, shape);
//   2. a remainder r > 0: on CUDA (pad = true) one run of the smallest bucket batch >= r,
//      padded (pad slots are computed and discarded: a captured graph costs about the same
//      for any batch); on CPU (pad = false) runs of the largest bucket batches that fit
//      (5 = 4 + 1), since CPU time grows with the batch and a pad slot is wasted work.
#include <cstdint>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// Bucket batch sizes for max_batch, ascending: 1 -> {1}; 6 -> {1, 2, 4, 6}.
std::vector<int64_t> bucket_batches(int64_t max_batch);

/// Every planned bucket: shapes outermost (in the given order), batch sizes ascending.
std::vector<Bucket> make_buckets(const std::vector<Shape>& shapes, int64_t max_batch);

/// One engine run: `count` images starting at `first`, on a bucket of batch `batch`.
struct Run {
  int64_t first = 0;
  int64_t count = 0;
  int64_t batch = 0;
};

/// Splits n images into runs over the bucket batch sizes (see the file comment).
std::vector<Run> schedule(int64_t n, const std::vector<int64_t>& batches, bool pad);

}  // namespace ifa_rt::detail
