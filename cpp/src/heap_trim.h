#pragma once
// Bounded resident memory over many unplanned input sizes (Options::trim_heap_mb): no torch.
#include <cstdint>

namespace ifa_rt::detail {

/// This process's resident memory in bytes (/proc/self/statm), or 0 where unreadable.
int64_t resident_bytes();

/// Fixes glibc's mmap threshold at `kb` KiB for the whole process (Options::mmap_threshold_kb);
/// a no-op for 0 or without glibc.
void fix_mmap_threshold(int kb);

/// Returns the heap's free memory to the system (glibc malloc_trim) once resident memory has
/// grown `budget_mb` past where it was at construction or after the last trim; a no-op with
/// budget 0 or without glibc. Not thread-safe (the Segmenter calls it under its mutex).
class HeapTrimmer {
 public:
  explicit HeapTrimmer(int budget_mb = 0);
  /// After an unplanned run: trims when the growth passed the budget; true when it did.
  bool after_unplanned();
  int64_t trims() const { return trims_; }

 private:
  int64_t budget_bytes_;
  int64_t baseline_;  // resident bytes at construction or after the last trim
  int64_t trims_ = 0;
};

}  // namespace ifa_rt::detail
