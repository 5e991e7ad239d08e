// The checks of a call's inputs and of a plan's size (call_checks.h).
#include "call_checks.h"

#include <unistd.h>

#include <cstdio>

#include "options.h"
#include "plan.h"

namespace ifa_rt::detail {

[[noreturn]] void bad_input(const std::string& where, const std::string& name, const std::string& what,
                            const std::string& got) {
  throw InvalidArgument(where + ": input '" + name + "': expected " + what + ", got " + got);
}

std::string hxw(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

namespace {

std::string gib(double bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return s;
}

}  // namespace

void check_plan_memory(const Options& o) {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;
  const double physical = static_cast<double>(pages) * static_cast<double>(page);
  double bytes = 0;
  for (const Bucket& b : detail::make_buckets(o.shapes, o.max_batch))
    bytes += static_cast<double>(b.batch) * static_cast<double>(b.height) * static_cast<double>(b.width) * 3;
  if (bytes > physical)
    throw InvalidArgument(
        "Options: 'shapes': expected planned input buffers (max_batch x shapes) that fit in "
        "memory (" +
        gib(physical) + "), got " + gib(bytes));
}

void collect_images(const TensorView& v, const std::string& where, bool allow_batch, int64_t min_size,
                    std::vector<ImageRef>* out) {
  const std::string name = allow_batch ? "images" : "images[" + std::to_string(out->size()) + "]";
  if (v.dtype != DType::uint8) bad_input(where, name, "dtype uint8", to_string(v.dtype));
  const size_t rank = v.shape.size();
  if (rank != 3 && !(allow_batch && rank == 4))
    bad_input(where, name, allow_batch ? "shape [H,W,3] or [B,H,W,3]" : "shape [H,W,3]",
              detail::shape_string(v.shape) + " (rank " + std::to_string(rank) + ")");
  if (v.shape[rank - 1] != 3)
    bad_input(where, name, "3 channels (RGB, last dimension)",
              std::to_string(v.shape[rank - 1]) + " (shape " + detail::shape_string(v.shape) + ")");
  std::vector<int64_t> strides = v.strides;
  if (strides.empty()) {
    strides.assign(rank, 1);
    for (size_t k = rank - 1; k > 0; --k) strides[k - 1] = strides[k] * v.shape[k];
  }
  if (strides.size() != rank)
    bad_input(where, name, "one stride per dimension (" + std::to_string(rank) + ")", std::to_string(strides.size()));
  for (int64_t s : strides)
    if (s < 0) bad_input(where, name, "non-negative strides", detail::shape_string(strides));
  const int64_t batch = rank == 4 ? v.shape[0] : 1;
  const int64_t h = v.shape[rank - 3], w = v.shape[rank - 2];
  if (batch < 1 || h < 1 || w < 1)
    bad_input(where, name, "a non-empty image batch", "shape " + detail::shape_string(v.shape));
  if (h > detail::kMaxSide || w > detail::kMaxSide)
    bad_input(where, name, "height and width <= " + std::to_string(detail::kMaxSide), hxw(h, w));
  if (h < min_size || w < min_size)
    bad_input(where, name, "height and width >= " + std::to_string(min_size) + " (the artifact's min_size)", hxw(h, w));
  if (v.data == nullptr) bad_input(where, name, "data", "a null pointer");
  const int64_t sb = rank == 4 ? strides[0] : 0;
  const size_t k = rank - 3;
  for (int64_t i = 0; i < batch; ++i)
    out->push_back({static_cast<const uint8_t*>(v.data) + i * sb, h, w, strides[k], strides[k + 1], strides[k + 2]});
}

}  // namespace ifa_rt::detail
