#pragma once
// The state of one engine's arena (alloc_counter.cpp, the only user): the slab, its layout,
// the pool of blocks for parallel regions, and what the registry knows of each pointer.
#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_set>
#include <vector>

#include "alloc_counter.h"
#include "arena_layout.h"

namespace ifa_rt::detail {

// The pool's blocks of one size.
struct PoolClass {
  std::vector<void*> free;  // reserved for every block of the size: a release never allocates
  size_t blocks = 0;
};

// One engine's arena: the slab, its layout, and the pool of blocks for parallel regions.
struct CacheState {
  std::map<size_t, PoolClass> pool;  // by block size: best fit from lower_bound(request)
  ArenaLayout layout;                // offsets of the caller's tensors in use, slab or beyond
  uint8_t* slab = nullptr;
  size_t slab_bytes = 0;
  size_t slab_ranges = 0;  // ranges in use inside the slab
  // Ranges in use past the slab's end, each in a block of its own. One that outlives its call
  // (a cache the first call makes) is detached from the layout when the
  // next call starts: left there, it would split every later call's layout.
  std::unordered_set<void*> overflow;
  BlockCache::Counters counters;
  bool alive = true;
  uint64_t epoch = 0;
};

// slab_free: a slab address not in use (its entry kept: the next call there allocates none);
// overflow: a range past the slab's end, in a block of its own; detached: an overflow block
// that outlived its call, out of the layout.
enum class Kind { pool, slab, slab_free, overflow, detached };

struct BlockInfo {
  CacheState* cache;
  size_t size;       // the block's (or range's) bytes
  size_t requested;  // the bytes of the request it serves now (live-memory accounting)
  uint64_t epoch;    // the last epoch it was handed out in
  Kind kind;
  size_t offset;  // slab and overflow: the range in the layout
};

}  // namespace ifa_rt::detail
