#include "engine_common.h"

#include <algorithm>
#include <vector>

#include "options.h"

namespace ifa_rt::detail {

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string first_line(const std::string& what) {
  auto end = what.find('\n');
  return end == std::string::npos ? what : what.substr(0, end);
}

std::string error_summary(const std::string& what) {
  if (what.rfind("The following operation failed in the TorchScript interpreter", 0) != 0) return first_line(what);
  const size_t end = what.find_last_not_of("\n ");
  if (end == std::string::npos) return first_line(what);
  const size_t nl = what.rfind('\n', end);
  const size_t begin = nl == std::string::npos ? 0 : nl + 1;
  return what.substr(begin, end + 1 - begin);
}

at::ScalarType scalar_type(Precision p) {
  switch (p) {
    case Precision::fp16:
      return at::kHalf;
    case Precision::bf16:
      return at::kBFloat16;
    default:
      return at::kFloat;
  }
}

bool consecutive(const ImageRef* images, int64_t n) {
  const int64_t step = images[0].height * images[0].width * 3;
  for (int64_t i = 0; i < n; ++i)
    if (!images[i].contiguous() || images[i].data != images[0].data + i * step) return false;
  return true;
}

at::Tensor image_tensor(const ImageRef& im) {
  return at::from_blob(const_cast<uint8_t*>(im.data), {im.height, im.width, 3}, {im.stride_h, im.stride_w, im.stride_c},
                       at::TensorOptions(at::kByte));
}

at::Tensor batch_input(const ImageRef* images, int64_t n, const at::Tensor& buffer) {
  if (n == buffer.size(0) && consecutive(images, n))
    return at::from_blob(const_cast<uint8_t*>(images[0].data), buffer.sizes(), at::TensorOptions(at::kByte));
  for (int64_t i = 0; i < n; ++i) buffer.select(0, i).copy_(image_tensor(images[i]));
  return buffer;
}

void copy_out(const at::Tensor& result, int64_t n, Output what, void* const* outs) {
  const auto dtype = what == Output::labels ? at::kByte : at::kFloat;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor src = result.select(0, i);
    at::from_blob(outs[i], src.sizes(), at::TensorOptions(dtype)).copy_(src);
  }
}

void check_result(const at::Tensor& t, Output what, int64_t b, int64_t h, int64_t w, int64_t c) {
  const bool labels = what == Output::labels;
  std::vector<int64_t> want = labels ? std::vector<int64_t>{b, h, w} : std::vector<int64_t>{b, c, h, w};
  if (t.sizes().vec() != want || (labels && t.scalar_type() != at::kByte) ||
      (!labels && !at::isFloatingType(t.scalar_type())))
    throw Error(std::string(labels ? "forward" : "logits") + ": expected " + (labels ? "uint8 " : "float32 ") +
                shape_string(want) + ", got " + std::string(c10::getDtypeNames(t.scalar_type()).first) + " " +
                shape_string(t.sizes().vec()));
}

BlockCache::Counters settle(BlockCache& cache, const std::function<void()>& pass) {
  for (int k = 0; k < 4; ++k) {
    cache.next_epoch();  // the slab is fitted to the calls before this pass
    const int64_t before = cache.counters().misses;
    pass();
    const BlockCache::Counters c = cache.counters();
    // Done when a pass took nothing new and needed the whole slab: the first pass usually
    // runs in a slab sized by the profiling calls of warm-up, larger than a call needs.
    if (c.misses == before && c.slab_high_water == c.slab_bytes) break;
  }
  cache.trim();
  return cache.counters();
}

void arena_info(const BlockCache& cache, Plan* plan) {
  const BlockCache::Counters c = cache.counters();
  plan->buffers.push_back(
      {"arena (intermediates and outputs; every bucket's planned calls share it)", "cpu", "mixed", {}, c.held_bytes});
  plan->arena_bytes += c.held_bytes;
  plan->arena_blocks += c.blocks;
  plan->peak_live_bytes = std::max(plan->peak_live_bytes, c.peak_live_bytes);
}

AllocCounters counters_since(const BlockCache& cache, const BlockCache::Counters& warm) {
  const auto c = cache.counters();
  return {c.misses - warm.misses, c.miss_bytes - warm.miss_bytes, c.hits - warm.hits, c.held_bytes, c.blocks,
          c.peak_live_bytes};
}

}  // namespace ifa_rt::detail
