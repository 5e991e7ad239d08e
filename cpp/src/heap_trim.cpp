// glibc raises its mmap threshold as large blocks are freed and then keeps multi-MB
// temporaries of the unplanned path in its heaps; malloc_trim hands the free pages back.
#include "heap_trim.h"

#include <unistd.h>

#include <cstdio>
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace ifa_rt::detail {

int64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long size = 0, resident = 0;
  const int read = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return read == 2 ? resident * static_cast<int64_t>(sysconf(_SC_PAGE_SIZE)) : 0;
}

void fix_mmap_threshold(int kb) {
#ifdef __GLIBC__
  // Setting it also switches off glibc's dynamic threshold, which would otherwise rise to
  // the size of each large block freed and keep such blocks in the heap from then on.
  if (kb > 0) mallopt(M_MMAP_THRESHOLD, kb * 1024);
#else
  (void)kb;
#endif
}

HeapTrimmer::HeapTrimmer(int budget_mb)
    : budget_bytes_(int64_t{budget_mb} << 20), baseline_(budget_mb > 0 ? resident_bytes() : 0) {}

bool HeapTrimmer::after_unplanned() {
#ifdef __GLIBC__
  if (budget_bytes_ <= 0) return false;
  const int64_t rss = resident_bytes();
  if (rss <= 0 || rss - baseline_ < budget_bytes_) return false;
  malloc_trim(0);
  ++trims_;
  baseline_ = resident_bytes();
  return true;
#else
  return false;
#endif
}

}  // namespace ifa_rt::detail
