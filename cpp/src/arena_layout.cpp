#include "arena_layout.h"

#include <algorithm>

namespace ifa_rt::detail {

size_t ArenaLayout::place(size_t bytes) {
  const size_t n = rounded(bytes);
  if (gaps_.capacity() < in_use_ + 1) gaps_.reserve(2 * (in_use_ + 1));  // the only allocation
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
  const size_t offset = best->first;
  if (best->second == n) {
    gaps_.erase(best);
  } else {
    best->first += n;
    best->second -= n;
  }
  return offset;
}

void ArenaLayout::release(size_t offset, size_t bytes) noexcept {
  size_t begin = offset, end = offset + rounded(bytes);
  --in_use_;
  auto next = std::lower_bound(gaps_.begin(), gaps_.end(), std::make_pair(begin, size_t{0}));
  const bool merge_next = next != gaps_.end() && next->first == end;
  const bool merge_prev = next != gaps_.begin() && std::prev(next)->first + std::prev(next)->second == begin;
  if (merge_prev) begin = std::prev(next)->first;
  if (merge_next) end = next->first + next->second;
  // Remove the merged neighbours, then add the merged gap unless it reaches the top.
  auto first = merge_prev ? std::prev(next) : next;
  auto last = merge_next ? std::next(next) : next;
  auto at = gaps_.erase(first, last);
  if (end == top_)
    top_ = begin;
  else
    gaps_.insert(at, {begin, end - begin});  // within capacity: gaps <= ranges in use
}

}  // namespace ifa_rt::detail
