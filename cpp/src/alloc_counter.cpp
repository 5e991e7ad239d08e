// The counting allocator and the per-engine arenas of the CPU memory plan (alloc_counter.h).
//
// Why one slab per engine, laid out per call: a CPU engine's planned calls never overlap
// (the Segmenter runs them under its mutex; a SegmenterPool has one engine, so one arena,
// per seat), so every tensor of one planned call is freed before the next call starts, on
// whatever bucket or shape. Per-size free lists made each bucket keep blocks of its own sizes
// (batch 4's tensors are 4x batch 1's), and a freed block only served a request it fitted:
// the plan was the sum of every bucket's blocks, 2x their peak live memory and more. Here
// the calling thread's large tensors get offsets in one slab (ArenaLayout: best-fit gaps
// that merge when freed), and each call starts from an empty layout. The same call makes the
// same requests in the same order, so it gets the same offsets every time, whatever ran
// before: the slab is sized by the largest high-water mark of warm-up's last pass over every
// bucket (about the largest bucket's peak live bytes) and no later call outgrows it. A range
// past the slab's end is still served (new memory, a counted miss), and the next call that
// finds the slab unused grows it. Requests made inside parallel regions, whose order between
// threads varies, come from a pool of cached blocks instead (best fit, at most 2x the
// request). Simpler than recording every bucket's trace and solving an offline layout, and
// a layout that a call could not reproduce costs a counted allocation, never a failure.
#include "alloc_counter.h"

#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "arena_layout.h"

namespace ifa_rt::detail {

// One engine's arena: the slab, its layout, and the pool of blocks for parallel regions.
struct CacheState {
  std::multimap<size_t, void*> free;  // the pool's free blocks by size: best fit is lower_bound
  ArenaLayout layout;                 // offsets of the caller's tensors in use, slab or beyond
  uint8_t* slab = nullptr;
  size_t slab_bytes = 0;
  size_t slab_ranges = 0;  // ranges in use inside the slab
  // Ranges in use past the slab's end, each in a block of its own. One that outlives its call
  // (a cache a first call makes, e.g. reordered weights) is detached from the layout when the
  // next call starts: left there, it would split every later call's layout.
  std::unordered_set<void*> overflow;
  BlockCache::Counters counters;
  bool alive = true;
  uint64_t epoch = 0;
};

namespace {

// overflow: a range past the slab's end, in a block of its own; detached: an overflow block
// that outlived its call, out of the layout.
enum class Kind { pool, slab, overflow, detached };

struct BlockInfo {
  CacheState* cache;
  size_t size;       // the block's (or range's) bytes
  size_t requested;  // the bytes of the request it serves now (live-memory accounting)
  uint64_t epoch;    // the last epoch it was handed out in
  Kind kind;
  size_t offset;  // slab and overflow: the range in the layout
};

constexpr size_t kPoolMaxFit = 2;  // a pool block serves requests of at least half its size

// One lock for the registry and every arena: critical sections are a few map operations,
// and a call makes a few hundred allocations.
std::mutex g_mutex;
std::unordered_map<void*, BlockInfo>& registry() {
  static auto* r = new std::unordered_map<void*, BlockInfo>();  // never destroyed
  return *r;
}
thread_local CacheState* t_cache = nullptr;
// The "cache" of an unplanned call (UnplannedScope): it caches nothing, its allocations go to
// the wrapped allocator, and while it runs no worker allocation is filed under another call.
CacheState g_unplanned;
std::atomic<int64_t> g_unattributed{0};
// The caches of the engine calls running now (one entry per outermost Scope; g_mutex).
// Intra-op worker threads allocate without a scope of their own: while exactly one call is
// running, what they allocate belongs to it (cached and counted like the caller's); with
// several at once it cannot be attributed and is counted in g_unattributed_in_calls.
std::vector<CacheState*>& active_calls() {
  static auto* v = new std::vector<CacheState*>();  // never destroyed
  return *v;
}
std::atomic<int64_t> g_unattributed_in_calls{0};

class CountingAllocator;
CountingAllocator* g_allocator = nullptr;

void release_block(void* ptr);

// Memory taken from the system for `cache` (g_mutex held).
void count_miss(CacheState* cache, size_t bytes) {
  auto& c = cache->counters;
  c.misses++;
  c.miss_bytes += static_cast<int64_t>(bytes);
  c.held_bytes += static_cast<int64_t>(bytes);
  c.blocks++;
}

void hand_out(CacheState* cache, size_t requested) {
  auto& c = cache->counters;
  c.outstanding++;
  c.live_bytes += static_cast<int64_t>(requested);
  c.peak_live_bytes = std::max(c.peak_live_bytes, c.live_bytes);
}

// Replaces the slab by one of `bytes` (g_mutex held; nothing may be in it). A new slab is
// new memory: a miss.
void resize_slab(CacheState* cache, size_t bytes) {
  auto& c = cache->counters;
  if (cache->slab != nullptr) {
    c10::free_cpu(cache->slab);
    c.held_bytes -= static_cast<int64_t>(cache->slab_bytes);
    c.blocks--;
  }
  cache->slab = bytes > 0 ? static_cast<uint8_t*>(c10::alloc_cpu(bytes)) : nullptr;
  cache->slab_bytes = bytes;
  if (bytes > 0) count_miss(cache, bytes);
  c.slab_bytes = static_cast<int64_t>(bytes);
}

// Takes the overflow blocks still in use out of the layout (g_mutex held; between calls).
void detach_overflow(CacheState* cache) {
  for (void* p : cache->overflow) {
    BlockInfo& info = registry()[p];
    cache->layout.release(info.offset, info.size);
    info.kind = Kind::detached;
  }
  cache->overflow.clear();
}

// A call that found no room grows the slab before the next call lays out (g_mutex held).
void grow_slab(CacheState* cache) {
  detach_overflow(cache);
  if (cache->slab_ranges == 0 && cache->layout.high_water() > cache->slab_bytes)
    resize_slab(cache, cache->layout.high_water());
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* wrapped)
      : wrapped_(wrapped), wrapped_raw_deleter_(wrapped->raw_deleter()) {}

  c10::DataPtr allocate(size_t n) override {
    CacheState* cache = t_cache;
    if (n == 0) return wrapped_->allocate(n);                 // no memory: nothing to count or cache
    if (cache == &g_unplanned) return wrapped_->allocate(n);  // an unplanned call: no cache, no lock
    std::unique_lock<std::mutex> lock(g_mutex);
    const bool caller = cache != nullptr;
    if (!caller) {
      const auto& active = active_calls();
      // A thread without a scope is an intra-op worker of the running call only inside a
      // parallel region; any other thread (an unplanned call's workers, the host's own
      // threads) is not, and with several calls running no worker can be attributed.
      if (active.size() == 1 && active.front() != &g_unplanned && at::in_parallel_region()) {
        cache = active.front();
      } else {
        (active.empty() ? g_unattributed : g_unattributed_in_calls).fetch_add(1, std::memory_order_relaxed);
        lock.unlock();
        return wrapped_->allocate(n);
      }
    }
    void* ptr = nullptr;
    if (caller && !at::in_parallel_region()) {
      const size_t size = ArenaLayout::rounded(n), offset = cache->layout.place(n);
      cache->counters.slab_high_water = static_cast<int64_t>(cache->layout.high_water());
      if (offset + size <= cache->slab_bytes) {
        ptr = cache->slab + offset;
        registry()[ptr] = {cache, size, n, cache->epoch, Kind::slab, offset};
        cache->slab_ranges++;
        cache->counters.hits++;
      } else {
        lock.unlock();
        ptr = c10::alloc_cpu(size);
        lock.lock();
        registry()[ptr] = {cache, size, n, cache->epoch, Kind::overflow, offset};
        cache->overflow.insert(ptr);
        count_miss(cache, size);
      }
    } else {
      auto it = cache->free.lower_bound(n);
      if (it != cache->free.end() && it->first <= n * kPoolMaxFit) {
        ptr = it->second;
        cache->free.erase(it);
        BlockInfo& info = registry()[ptr];
        info.epoch = cache->epoch;
        info.requested = n;
        cache->counters.hits++;
      } else {
        lock.unlock();
        ptr = c10::alloc_cpu(n);
        lock.lock();
        registry()[ptr] = {cache, n, n, cache->epoch, Kind::pool, 0};
        count_miss(cache, n);
      }
    }
    hand_out(cache, n);
    return {ptr, ptr, &release_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  c10::DeleterFnPtr wrapped_raw_deleter() const { return wrapped_raw_deleter_; }

 private:
  c10::Allocator* wrapped_;
  c10::DeleterFnPtr wrapped_raw_deleter_;
};

// The deleter of arena memory, and the raw deleter of the allocator (mkldnn frees raw
// pointers through it, including ones the wrapped allocator made).
void release_block(void* ptr) {
  if (ptr == nullptr) return;
  std::unique_lock<std::mutex> lock(g_mutex);
  auto& reg = registry();
  auto it = reg.find(ptr);
  if (it == reg.end()) {
    lock.unlock();
    if (g_allocator != nullptr && g_allocator->wrapped_raw_deleter() != nullptr)
      g_allocator->wrapped_raw_deleter()(ptr);
    else
      c10::free_cpu(ptr);
    return;
  }
  const BlockInfo info = it->second;
  CacheState* cache = info.cache;
  auto& c = cache->counters;
  c.outstanding--;
  c.live_bytes -= static_cast<int64_t>(info.requested);
  void* to_free = nullptr;
  if (info.kind == Kind::pool) {
    if (cache->alive) {
      cache->free.emplace(info.size, ptr);
      return;
    }
    to_free = ptr;
  } else {
    if (info.kind != Kind::detached) cache->layout.release(info.offset, info.size);
    if (info.kind == Kind::slab) cache->slab_ranges--;
    if (info.kind == Kind::overflow) cache->overflow.erase(ptr);
    if (info.kind != Kind::slab) {
      to_free = ptr;
      c.held_bytes -= static_cast<int64_t>(info.size);
      c.blocks--;
    }
  }
  reg.erase(it);
  const bool last = !cache->alive && c.outstanding == 0;
  if (last && cache->slab != nullptr) resize_slab(cache, 0);
  lock.unlock();
  if (to_free != nullptr) c10::free_cpu(to_free);
  if (last) delete cache;
}

void install_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_allocator = new CountingAllocator(c10::GetCPUAllocator());  // lives for the process
    c10::SetCPUAllocator(g_allocator, /*priority=*/0);
  });
}

}  // namespace

BlockCache::BlockCache() : state_(new CacheState()) { install_once(); }

BlockCache::~BlockCache() {
  std::vector<void*> to_free;
  bool last = false;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& [size, p] : state_->free) {
      registry().erase(p);
      to_free.push_back(p);
    }
    state_->free.clear();
    state_->alive = false;
    if (state_->slab_ranges == 0) resize_slab(state_, 0);
    last = state_->counters.outstanding == 0;
  }
  for (void* p : to_free) c10::free_cpu(p);
  if (last) delete state_;
}

BlockCache::Counters BlockCache::counters() const {
  std::lock_guard<std::mutex> lock(g_mutex);
  return state_->counters;
}

void BlockCache::next_epoch() {
  std::lock_guard<std::mutex> lock(g_mutex);
  state_->epoch++;
  detach_overflow(state_);
  // The slab becomes what the calls since the last epoch needed, larger or smaller.
  if (state_->slab_ranges == 0 && state_->layout.high_water() != state_->slab_bytes)
    resize_slab(state_, state_->layout.high_water());
  state_->layout.restart_high_water();
  state_->counters.slab_high_water = static_cast<int64_t>(state_->layout.high_water());
  state_->counters.peak_live_bytes = state_->counters.live_bytes;
}

int64_t BlockCache::trim() {
  std::vector<void*> to_free;
  int64_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto& reg = registry();
    for (auto it = state_->free.begin(); it != state_->free.end();) {
      auto info = reg.find(it->second);
      if (info->second.epoch == state_->epoch) {
        ++it;
        continue;
      }
      reg.erase(info);
      to_free.push_back(it->second);
      bytes += static_cast<int64_t>(it->first);
      it = state_->free.erase(it);
    }
    state_->counters.held_bytes -= bytes;
    state_->counters.blocks -= static_cast<int64_t>(to_free.size());
  }
  for (void* p : to_free) c10::free_cpu(p);
  return bytes;
}

BlockCache::Scope::Scope(BlockCache& cache) : previous_(t_cache) {
  t_cache = cache.state_;
  if (previous_ != nullptr) return;  // nested on this thread: the call is already registered
  std::lock_guard<std::mutex> lock(g_mutex);
  active_calls().push_back(cache.state_);
  grow_slab(cache.state_);
}

BlockCache::Scope::~Scope() {
  const CacheState* mine = t_cache;
  t_cache = previous_;
  if (previous_ != nullptr) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& active = active_calls();
  active.erase(std::find(active.begin(), active.end(), mine));
}

UnplannedScope::UnplannedScope() : previous_(t_cache) {
  t_cache = &g_unplanned;
  if (previous_ != nullptr) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  active_calls().push_back(&g_unplanned);
}

UnplannedScope::~UnplannedScope() {
  t_cache = previous_;
  if (previous_ != nullptr) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& active = active_calls();
  active.erase(std::find(active.begin(), active.end(), &g_unplanned));
}

bool counting_allocator_installed() { return g_allocator != nullptr && c10::GetCPUAllocator() == g_allocator; }

int64_t unattributed_allocations() { return g_unattributed.load(); }

int64_t unattributed_allocations_in_calls() { return g_unattributed_in_calls.load(); }

}  // namespace ifa_rt::detail
