// The counting allocator and the per-engine arenas of the CPU memory plan (alloc_counter.h).
//
// Why one slab per engine, laid out per call: an engine's planned calls never overlap (the
// Segmenter runs them under its mutex; a SegmenterPool has one engine per seat), so each call
// starts with the whole arena free, on whatever bucket or shape. Per-size free lists kept
// each bucket's blocks apart (batch 4's tensors are 4x batch 1's): the plan was their sum,
// 4.7x the peak live memory for camvid at 360x480 and max_batch 4. Here the calling thread's
// tensors get offsets in one slab (ArenaLayout: best fit over gaps that merge when freed).
// A call makes the same requests in the same order every time, so it gets the same offsets
// whatever ran before, and a slab sized by warm-up's last pass over every bucket holds every
// later call. A range past the slab's end is still served (new memory, a counted miss) and
// the next call grows the slab. Allocations inside parallel regions, whose order between
// threads varies, come from a pool of cached blocks (best fit, at most 2x the request).
// Simpler than recording each bucket's trace for an offline layout, and a call that does not
// reproduce its layout costs a counted allocation, never a failure.
#include "alloc_counter.h"

#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "alloc_arena.h"

namespace ifa_rt::detail {

namespace {

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

// The slab and overflow blocks come from mmap: freeing them (a slab resized, warm-up's
// overflow) must not raise glibc's dynamic mmap threshold, which then keeps the unplanned
// path's multi-MB temporaries in the heap (RSS growth: reliability.md). Small ones: c10's.
constexpr size_t kMapMin = size_t{64} << 10;
void* map(size_t bytes) {
  if (bytes < kMapMin) return c10::alloc_cpu(bytes);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}
void unmap(void* p, size_t bytes) { bytes < kMapMin ? c10::free_cpu(p) : static_cast<void>(munmap(p, bytes)); }

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
    auto& reg = registry();
    for (auto it = reg.begin(); it != reg.end();)
      it = it->second.cache == cache && it->second.kind == Kind::slab_free ? reg.erase(it) : std::next(it);
    unmap(cache->slab, cache->slab_bytes);
    c.held_bytes -= static_cast<int64_t>(cache->slab_bytes);
    c.blocks--;
    cache->slab = nullptr;
    cache->slab_bytes = 0;
    c.slab_bytes = 0;
  }
  if (bytes == 0) return;
  cache->slab = static_cast<uint8_t*>(map(bytes));  // on bad_alloc: no slab
  cache->slab_bytes = bytes;
  c.slab_bytes = static_cast<int64_t>(bytes);
  count_miss(cache, bytes);
}

// Takes the overflow blocks still in use out of the layout (g_mutex held; between calls).
void detach_overflow(CacheState* cache) {
  for (void* p : cache->overflow) {
    BlockInfo& info = registry().find(p)->second;
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
    // Whatever may throw (std::bad_alloc) comes before a change it would leave half done.
    void* ptr = nullptr;
    if (caller && !at::in_parallel_region()) {
      const size_t size = ArenaLayout::rounded(n), offset = cache->layout.place(n);
      cache->counters.slab_high_water = static_cast<int64_t>(cache->layout.high_water());
      if (offset + size <= cache->slab_bytes) {
        ptr = cache->slab + offset;
        try {
          registry()[ptr] = {cache, size, n, cache->epoch, Kind::slab, offset};  // usually a kept entry
        } catch (...) {
          cache->layout.release(offset, n);
          throw;
        }
        cache->slab_ranges++;
        cache->counters.hits++;
      } else {
        try {
          ptr = map(size);  // under the lock: overflow is a warm-up event
          registry()[ptr] = {cache, size, n, cache->epoch, Kind::overflow, offset};
          cache->overflow.insert(ptr);
        } catch (...) {
          cache->layout.release(offset, n);
          if (ptr != nullptr) {
            registry().erase(ptr);
            unmap(ptr, size);
          }
          throw;
        }
        count_miss(cache, size);
      }
    } else {
      auto it = cache->pool.lower_bound(n);
      while (it != cache->pool.end() && it->first <= n * kPoolMaxFit && it->second.free.empty()) ++it;
      if (it != cache->pool.end() && it->first <= n * kPoolMaxFit) {
        ptr = it->second.free.back();
        it->second.free.pop_back();
        BlockInfo& info = registry().find(ptr)->second;
        info.epoch = cache->epoch;
        info.requested = n;
        cache->counters.hits++;
      } else {
        PoolClass& cls = cache->pool[n];
        cls.free.reserve(cls.blocks + 1);
        ptr = c10::alloc_cpu(n);
        try {
          registry()[ptr] = {cache, n, n, cache->epoch, Kind::pool, 0};
        } catch (...) {
          c10::free_cpu(ptr);
          throw;
        }
        cls.blocks++;
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
  // Nothing here allocates: a deleter must not throw.
  void* to_free = nullptr;
  size_t to_unmap = 0;  // overflow and detached blocks: their bytes
  if (info.kind == Kind::pool) {
    if (cache->alive) {
      cache->pool.find(info.size)->second.free.push_back(ptr);  // within its reserve
      return;
    }
    to_free = ptr;
    reg.erase(it);
  } else if (info.kind == Kind::slab) {
    cache->layout.release(info.offset, info.size);
    cache->slab_ranges--;
    if (cache->alive)
      it->second.kind = Kind::slab_free;
    else
      reg.erase(it);
  } else {  // overflow, detached
    if (info.kind == Kind::overflow) {
      cache->layout.release(info.offset, info.size);
      cache->overflow.erase(ptr);
    }
    to_free = ptr;
    to_unmap = info.size;
    c.held_bytes -= static_cast<int64_t>(info.size);
    c.blocks--;
    reg.erase(it);
  }
  const bool last = !cache->alive && c.outstanding == 0;
  if (last && cache->slab != nullptr) resize_slab(cache, 0);
  lock.unlock();
  if (to_free != nullptr) to_unmap > 0 ? unmap(to_free, to_unmap) : c10::free_cpu(to_free);
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
    for (auto& [size, cls] : state_->pool)
      for (void* p : cls.free) {
        registry().erase(p);
        to_free.push_back(p);
      }
    state_->pool.clear();
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
    for (auto& [size, cls] : state_->pool) {
      auto old = std::stable_partition(cls.free.begin(), cls.free.end(),
                                       [&](void* p) { return registry().find(p)->second.epoch == state_->epoch; });
      for (auto it = old; it != cls.free.end(); ++it, --cls.blocks, bytes += static_cast<int64_t>(size)) {
        registry().erase(*it);
        to_free.push_back(*it);
      }
      cls.free.erase(old, cls.free.end());
    }
    state_->counters.held_bytes -= bytes;
    state_->counters.blocks -= static_cast<int64_t>(to_free.size());
  }
  for (void* p : to_free) c10::free_cpu(p);
  return bytes;
}

namespace {

// Registers an outermost scope's call as running, or no longer (g_mutex taken).
void start_call(CacheState* call) {
  std::lock_guard<std::mutex> lock(g_mutex);
  active_calls().push_back(call);
  try {
    if (call != &g_unplanned) grow_slab(call);
  } catch (...) {  // std::bad_alloc, or c10's out-of-memory error
    // The slab stays as it is; this call's overflow is served and counted as before.
  }
}
void end_call(const CacheState* call) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& active = active_calls();
  active.erase(std::find(active.begin(), active.end(), call));
}

}  // namespace

BlockCache::Scope::Scope(BlockCache& cache) : previous_(t_cache) {
  t_cache = cache.state_;
  if (previous_ == nullptr) start_call(cache.state_);  // nested on this thread: registered
}

BlockCache::Scope::~Scope() {
  const CacheState* mine = t_cache;
  t_cache = previous_;
  if (previous_ == nullptr) end_call(mine);
}

UnplannedScope::UnplannedScope() : previous_(t_cache) {
  t_cache = &g_unplanned;
  if (previous_ == nullptr) start_call(&g_unplanned);
}

UnplannedScope::~UnplannedScope() {
  t_cache = previous_;
  if (previous_ == nullptr) end_call(&g_unplanned);
}

bool counting_allocator_installed() { return g_allocator != nullptr && c10::GetCPUAllocator() == g_allocator; }

int64_t unattributed_allocations() { return g_unattributed.load(); }

int64_t unattributed_allocations_in_calls() { return g_unattributed_in_calls.load(); }

}  // namespace ifa_rt::detail
