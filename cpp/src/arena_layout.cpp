#include "arena_layout.h"

#include <algorithm>

namespace ifa_rt::detail {

size_t ArenaLayout::place(size_t bytes) {
  const size_t n = rounded(bytes);
  auto best = gaps_.end();
  // Linear best fit: a call leaves tens of gaps at most.
  for (auto it = gaps_.begin(); it != gaps_.end(); ++it)
    if (it->second >= n && (best == gaps_.end() || it->second < best->second)) best = it;
  ++in_use_;
  if (best == gaps_.end()) {
    const size_t offset = top_;
    top_ += n;
    high_water_ = std::max(high_water_, top_);
    return offset;
  }
  const size_t offset = best->first, left = best->second - n;
  gaps_.erase(best);
  if (left > 0) gaps_.emplace(offset + n, left);
  return offset;
}

void ArenaLayout::release(size_t offset, size_t bytes) {
  size_t begin = offset, end = offset + rounded(bytes);
  --in_use_;
  auto next = gaps_.lower_bound(begin);
  if (next != gaps_.end() && next->first == end) {
    end += next->second;
    next = gaps_.erase(next);
  }
  if (next != gaps_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      gaps_.erase(prev);
    }
  }
  if (end == top_)
    top_ = begin;
  else
    gaps_.emplace(begin, end - begin);
}

}  // namespace ifa_rt::detail
