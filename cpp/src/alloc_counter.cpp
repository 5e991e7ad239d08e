#include "alloc_counter.h"

#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ifa_rt::detail {

struct CacheState {
  std::unordered_map<size_t, std::vector<void*>> free;
  BlockCache::Counters counters;
  bool alive = true;
  uint64_t epoch = 0;
};

namespace {

struct BlockInfo {
  CacheState* cache;
  size_t size;
  uint64_t epoch;  // the last epoch it was handed out in
};

// One lock for the registry and every cache's free lists: critical sections are a few
// hash-map operations, and a call makes tens of allocations.
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

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* wrapped)
      : wrapped_(wrapped), wrapped_raw_deleter_(wrapped->raw_deleter()) {}

  c10::DataPtr allocate(size_t n) override {
    CacheState* cache = t_cache;
    if (n == 0) return wrapped_->allocate(n);                 // no memory: nothing to count or cache
    if (cache == &g_unplanned) return wrapped_->allocate(n);  // an unplanned call: no cache, no lock
    void* ptr = nullptr;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      if (cache == nullptr) {
        const auto& active = active_calls();
        // A thread without a scope is an intra-op worker of the running call only inside a
        // parallel region; any other thread (an unplanned call's workers, the host's own
        // threads) is not, and with several calls running no worker can be attributed.
        if (active.size() == 1 && active.front() != &g_unplanned && at::in_parallel_region()) {
          cache = active.front();
        } else {
          (active.empty() ? g_unattributed : g_unattributed_in_calls).fetch_add(1, std::memory_order_relaxed);
          return wrapped_->allocate(n);
        }
      }
      auto it = cache->free.find(n);
      if (it != cache->free.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        registry()[ptr].epoch = cache->epoch;
        cache->counters.hits++;
        cache->counters.outstanding++;
      }
    }
    if (ptr == nullptr) {
      ptr = c10::alloc_cpu(n);
      std::lock_guard<std::mutex> lock(g_mutex);
      registry()[ptr] = {cache, n, cache->epoch};
      cache->counters.misses++;
      cache->counters.miss_bytes += static_cast<int64_t>(n);
      cache->counters.held_bytes += static_cast<int64_t>(n);
      cache->counters.outstanding++;
    }
    return {ptr, ptr, &release_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  c10::DeleterFnPtr wrapped_raw_deleter() const { return wrapped_raw_deleter_; }

 private:
  c10::Allocator* wrapped_;
  c10::DeleterFnPtr wrapped_raw_deleter_;
};

// The deleter of cached blocks, and the raw deleter of the allocator (mkldnn frees raw
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
  CacheState* cache = it->second.cache;
  cache->counters.outstanding--;
  if (cache->alive) {
    cache->free[it->second.size].push_back(ptr);
    return;
  }
  reg.erase(it);
  const bool last = cache->counters.outstanding == 0;
  lock.unlock();
  c10::free_cpu(ptr);
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
    for (auto& [size, ptrs] : state_->free)
      for (void* p : ptrs) {
        registry().erase(p);
        to_free.push_back(p);
      }
    state_->free.clear();
    state_->alive = false;
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
}

int64_t BlockCache::trim() {
  std::vector<void*> to_free;
  int64_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto& reg = registry();
    for (auto& [size, ptrs] : state_->free) {
      std::vector<void*> keep;
      for (void* p : ptrs) {
        auto it = reg.find(p);
        if (it->second.epoch == state_->epoch) {
          keep.push_back(p);
        } else {
          reg.erase(it);
          to_free.push_back(p);
          bytes += static_cast<int64_t>(size);
        }
      }
      ptrs.swap(keep);
    }
    state_->counters.held_bytes -= bytes;
  }
  for (void* p : to_free) c10::free_cpu(p);
  return bytes;
}

BlockCache::Scope::Scope(BlockCache& cache) : previous_(t_cache) {
  t_cache = cache.state_;
  if (previous_ != nullptr) return;  // nested on this thread: the call is already registered
  std::lock_guard<std::mutex> lock(g_mutex);
  active_calls().push_back(cache.state_);
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
