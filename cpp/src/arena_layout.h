#pragma once
// Where a planned call's large tensors sit in its engine's arena (pure logic, no torch).
//
// The arena is one slab; ArenaLayout hands out offsets into it, as if it had no end:
//   1. a request (rounded up to kAlign bytes) takes the smallest free gap that holds it (ties:
//      the lowest offset), else the space at the top, which moves up;
//   2. a released range joins the free gaps around it, or lowers the top;
//   3. high_water() is the most the top has reached since restart_high_water(): the slab
//      size that would have held every range without overflow.
// The same sequence of requests and releases from an empty layout gives the same offsets, so
// a slab sized by one warm-up call of each bucket holds every later call of any bucket
// (calls of one engine never overlap, so each starts from an empty layout).
#include <cstddef>
#include <utility>
#include <vector>

namespace ifa_rt::detail {

class ArenaLayout {
 public:
  /// Range alignment: c10's CPU allocator aligns to 64 bytes, and so does the arena.
  static constexpr size_t kAlign = 64;

  /// `bytes` rounded up to kAlign.
  static size_t rounded(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

  /// Reserves rounded(bytes) and returns its offset. May throw std::bad_alloc (growing its
  /// gap list), then with nothing changed.
  size_t place(size_t bytes);
  /// Frees the range place() returned at `offset` for `bytes`. Never allocates (a deleter
  /// calls it): there are never more gaps than ranges in use, and place() reserved those.
  void release(size_t offset, size_t bytes) noexcept;

  /// Ranges in use now.
  size_t in_use() const { return in_use_; }
  /// The end of the highest range in use now.
  size_t top() const { return top_; }
  /// The most `top()` reached since the last restart_high_water().
  size_t high_water() const { return high_water_; }
  void restart_high_water() { high_water_ = top_; }
  /// Free gaps below the top, by offset: (offset, bytes).
  const std::vector<std::pair<size_t, size_t>>& gaps() const { return gaps_; }

 private:
  // Sorted by offset; never touches top_ (a gap there lowers the top instead), so each gap
  // is followed by a range in use.
  std::vector<std::pair<size_t, size_t>> gaps_;
  size_t top_ = 0, high_water_ = 0, in_use_ = 0;
};

}  // namespace ifa_rt::detail
