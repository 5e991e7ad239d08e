#pragma once
// A counting CPU allocator with one arena per engine (c10 only, no torch/script.h).
//
// 1. On first use, a CountingAllocator wrapping the current c10 CPU allocator is installed
//    with c10::SetCPUAllocator (process-wide; outside an engine call it only forwards).
// 2. While a BlockCache::Scope is alive on a thread, every CPU allocation made on that
//    thread is served from that engine's arena: a range of the arena's slab (laid out per
//    call, arena_layout.h), a hit; a range past the slab's end takes new memory from
//    c10::alloc_cpu (a miss, counted with its bytes). Every bucket and shape of the engine
//    shares the one arena.
// 3. Freed memory goes back to the arena that owns it, whichever thread frees it. The
//    Static Runtime arena and mkldnn's raw allocations go through the same path.
// 4. So after warm-up has run every planned bucket, a steady-state call allocates nothing
//    new: each request is a hit. Misses after warm-up are what stats() reports.
// 5. Warm-up ends with passes over all buckets, each in a new epoch: next_epoch() sizes the
//    slab to the high-water mark of the calls before it, until a pass fits the slab exactly
//    and takes no new memory; trim() then frees the small blocks that pass did not use.
// 6. Intra-op worker threads allocate without a scope: while exactly one planned engine call
//    runs in the process, allocations made inside a parallel region go to that call's arena
//    (its small-block pool: their order between threads varies), cached and counted like the
//    caller's. Everything else made while calls run (several calls at once, threads outside
//    a parallel region such as the host's own) goes to the wrapped allocator and is counted
//    by `unattributed_allocations_in_calls()`.
// 7. Unplanned calls run under an UnplannedScope: their allocations bypass every arena, and
//    while one runs no worker allocation is filed under another engine's planned call.
#include <cstdint>
#include <memory>

namespace ifa_rt::detail {

struct CacheState;

class BlockCache {
 public:
  struct Counters {
    int64_t misses = 0, miss_bytes = 0, hits = 0, outstanding = 0;
    int64_t held_bytes = 0, blocks = 0;  ///< the arena: memory taken from the system (free + in use)
    /// The slab, and the extent the calls since next_epoch() laid out in it (or past it).
    int64_t slab_bytes = 0, slab_high_water = 0;
    /// Bytes requested by the tensors alive now, and their most since next_epoch(): a
    /// planned call's peak live memory (calls on one engine never overlap).
    int64_t live_bytes = 0, peak_live_bytes = 0;
  };

  BlockCache();
  ~BlockCache();  // frees free blocks; blocks still in use are freed when released
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  Counters counters() const;

  /// Starts a new epoch: resizes the slab (when nothing is in it) to the high-water mark of
  /// the calls since the last epoch; blocks handed out from now on are marked as used in it;
  /// the high-water mark and the peak of live bytes restart from what is in use now.
  void next_epoch();
  /// Frees the small free blocks not handed out in the current epoch (e.g. blocks only the
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
/// allocations bypass the arenas, and it counts as a running call for attribution.
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
