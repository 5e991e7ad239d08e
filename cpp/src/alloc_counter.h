#pragma once
// A counting CPU allocator with per-engine block caches (c10 only, no torch/script.h).
//
// 1. On first use, a CountingAllocator wrapping the current c10 CPU allocator is installed
//    with c10::SetCPUAllocator (process-wide; outside an engine call it only forwards).
// 2. While a BlockCache::Scope is alive on a thread, every CPU allocation made on that
//    thread is served from that cache: an exact-size free block if there is one (a hit),
//    else new memory from c10::alloc_cpu (a miss, counted with its bytes).
// 3. Freed blocks go back to the cache that owns them, whichever thread frees them. The
//    Static Runtime arena and mkldnn's raw allocations go through the same path.
// 4. So after warm-up has run every planned bucket, a steady-state call allocates nothing
//    new: each request is a hit. Misses after warm-up are what stats() reports.
// 5. Warm-up ends with a pass over all buckets in a new epoch and trim(): free blocks that
//    pass did not use (first-call leftovers) are returned to the system.
// 6. Intra-op worker threads allocate without a scope: while exactly one planned engine call
//    runs in the process, allocations made inside a parallel region go to that call's cache
//    (so they are cached and counted like the caller's). Everything else made while calls
//    run (several calls at once, threads outside a parallel region such as the host's own)
//    goes to the wrapped allocator and is counted by `unattributed_allocations_in_calls()`.
// 7. Unplanned calls run under an UnplannedScope: their allocations bypass every cache, and
//    while one runs no worker allocation is filed under another engine's planned call.
#include <cstdint>
#include <memory>

namespace ifa_rt::detail {

struct CacheState;

class BlockCache {
 public:
  struct Counters {
    int64_t misses = 0, miss_bytes = 0, hits = 0, held_bytes = 0, outstanding = 0;
  };

  BlockCache();
  ~BlockCache();  // frees free blocks; blocks still in use are freed when released
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  Counters counters() const;

  /// Starts a new epoch: blocks handed out from now on are marked as used in it.
  void next_epoch();
  /// Frees the cached free blocks not handed out in the current epoch (e.g. blocks only the
  /// first, profiling, call needed); returns the bytes freed.
  int64_t trim();

  /// Routes this thread's CPU allocations to `cache` while alive (nestable).
  class Scope {
   public:
    explicit Scope(BlockCache& cache);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CacheState* previous_;
  };

 private:
  CacheState* state_;
};

/// Marks this thread as running an unplanned engine call while alive (nestable): its
/// allocations bypass the block caches, and it counts as a running call for attribution.
class UnplannedScope {
 public:
  UnplannedScope();
  ~UnplannedScope();
  UnplannedScope(const UnplannedScope&) = delete;
  UnplannedScope& operator=(const UnplannedScope&) = delete;

 private:
  CacheState* previous_;
};

/// True when the counting allocator is the current c10 CPU allocator.
bool counting_allocator_installed();

/// CPU allocations made while no engine call was running, since the allocator was installed.
int64_t unattributed_allocations();

/// CPU allocations by threads without a scope while several engine calls were running (they
/// cannot be attributed to one engine).
int64_t unattributed_allocations_in_calls();

}  // namespace ifa_rt::detail
