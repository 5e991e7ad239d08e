// Batcher lifetime and memory exhaustion: a Batcher closed or destroyed from one of its own
// completions (reachable from Python, where a Future's done-callback may drop the last
// reference) drains or cancels cleanly, and a bad_alloc at any allocation a worker makes
// while batching fails requests, never the process. A watchdog ends the process on a hang.
#include <link.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <thread>

#include "check.h"
#include "ifa_rt/batcher.h"
#include "ifa_rt/version.h"

// Fault injection: while armed, the countdown-th allocation that ifa_rt's own code makes on a
// thread other than the test's main thread throws std::bad_alloc. LibTorch's allocations are
// left alone: it is not written to survive bad_alloc everywhere (some of its constructors
// run under noexcept), so injecting there would test LibTorch, not the batcher.
namespace {
std::atomic<bool> g_armed{false};
std::atomic<long> g_countdown{0};
std::atomic<long> g_injected{0};
std::thread::id g_main;
// Where libifa_rt is mapped: [lo, hi), found once, so the check is two compares.
uintptr_t g_lo = 0, g_hi = 0;

bool from_ifa_rt(const void* caller) {
  const auto a = reinterpret_cast<uintptr_t>(caller);
  return a >= g_lo && a < g_hi;
}

// Sets g_lo/g_hi to the loaded segments of the object that holds `inside`.
void find_library(const void* inside) {
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        const auto want = reinterpret_cast<uintptr_t>(data);
        uintptr_t lo = UINTPTR_MAX, hi = 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          lo = std::min<uintptr_t>(lo, info->dlpi_addr + ph.p_vaddr);
          hi = std::max<uintptr_t>(hi, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
        }
        if (want < lo || want >= hi) return 0;
        g_lo = lo;
        g_hi = hi;
        return 1;
      },
      const_cast<void*>(inside));
}

void* allocate(std::size_t n, const void* caller) {
  if (g_armed.load(std::memory_order_relaxed) && std::this_thread::get_id() != g_main && from_ifa_rt(caller) &&
      g_countdown.fetch_sub(1) == 1) {
    g_injected.fetch_add(1);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return allocate(n, __builtin_return_address(0)); }
void* operator new[](std::size_t n) { return allocate(n, __builtin_return_address(0)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using ifa_rt::Batcher;
using ifa_rt::BatcherOptions;
using ifa_rt::Options;
using ifa_rt::Segmenter;
using ifa_rt::SegmenterPool;

namespace {

constexpr int64_t kPx = 32 * 48;
constexpr int kRequests = 6;

// Completion bookkeeping that allocates nothing once built (the injector must hit the
// batcher, not the test).
struct Outcomes {
  std::mutex mutex;
  std::condition_variable cv;
  int done = 0;
  int ok[kRequests] = {};  // 1 labels, 0 error
  bool cancelled[kRequests] = {};
  std::vector<uint8_t> labels = std::vector<uint8_t>(kRequests * kPx, 255);

  void finish(int k, std::exception_ptr error) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const ifa_rt::Cancelled&) {
        cancelled[k] = true;
      } catch (...) {
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    ok[k] = error ? 0 : 1;
    ++done;
    cv.notify_all();
  }
  bool wait_all() {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return done == kRequests; });
  }
  bool labels_match(int k, const std::vector<uint8_t>& ref) const {
    return std::equal(labels.begin() + k * kPx, labels.begin() + (k + 1) * kPx, ref.begin() + (k % 5) * kPx);
  }
};

// Submits kRequests images; request 0's completion waits until all are queued, then runs
// `in_callback` (which closes or destroys the batcher).
template <class F>
void submit_all(Batcher& b, const std::vector<uint8_t>& input, Outcomes& out, F in_callback) {
  auto queued = std::make_shared<std::atomic<bool>>(false);
  for (int k = 0; k < kRequests; ++k) {
    ifa_rt::TensorView v = check::view(input, {32, 48, 3});
    v.data = input.data() + (k % 5) * kPx * 3;
    b.submit(v, out.labels.data() + k * kPx, kPx, [&out, k, queued, in_callback](std::exception_ptr e) {
      if (k == 0) {
        while (!queued->load()) std::this_thread::yield();
        in_callback();
      }
      out.finish(k, std::move(e));
    });
  }
  queued->store(true);
}

}  // namespace

int main(int argc, char** argv) {
  g_main = std::this_thread::get_id();
  find_library(reinterpret_cast<const void*>(&ifa_rt::version));
  if (g_hi == 0) return 2;
  check::watchdog("test_batcher_lifetime", 100);

  return check::run(argc, argv, [] {
    const auto input = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    const auto ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 4;
    o.threads = 1;
    Segmenter seg(check::path("tiny.ifa.pt"), o);
    SegmenterPool pool(check::path("tiny.ifa.pt"), o, 2);

    // Destroyed from its own first completion: the worker drains the queue itself (every
    // request gets its labels), no std::terminate, and the engine serves afterwards.
    for (int on_pool = 0; on_pool < 2; ++on_pool) {
      Outcomes out;
      std::unique_ptr<Batcher> b = on_pool ? std::make_unique<Batcher>(pool, BatcherOptions{1, 0})
                                           : std::make_unique<Batcher>(seg, BatcherOptions{1, 0});
      Batcher* raw = b.get();
      std::unique_ptr<Batcher>* holder = &b;
      submit_all(*raw, input, out, [holder] { holder->reset(); });
      CHECK(out.wait_all());
      for (int k = 0; k < kRequests; ++k) {
        CHECK_EQ(out.ok[k], 1);
        CHECK(out.labels_match(k, ref));
      }
    }

    // Closed without draining from its own completion: the queued rest are cancelled.
    {
      Outcomes out;
      Batcher b(seg, BatcherOptions{1, 0});
      Batcher* raw = &b;
      submit_all(b, input, out, [raw] { raw->close(false); });
      CHECK(out.wait_all());
      CHECK_EQ(out.ok[0], 1);
      int cancelled = 0;
      for (int k = 1; k < kRequests; ++k) cancelled += out.cancelled[k] ? 1 : 0;
      CHECK_EQ(cancelled, kRequests - 1);
      CHECK(b.closed());
    }

    // bad_alloc at the n-th allocation a worker makes while batching, for every n until one
    // round runs without reaching it: each request completes (labels or an error), the
    // counters add up, and the batcher then serves correctly.
    long injected_rounds = 0;
    for (long n = 1; n < 2000; ++n) {
      Batcher b(seg, BatcherOptions{4, 20'000});
      Outcomes out;
      g_injected = 0;
      g_countdown = n;
      g_armed = true;
      submit_all(b, input, out, [] {});
      const bool all = out.wait_all();
      g_armed = false;
      CHECK(all);
      if (!all) break;
      int good = 0;
      for (int k = 0; k < kRequests; ++k) {
        good += out.ok[k];
        if (out.ok[k]) CHECK(out.labels_match(k, ref));
      }
      const auto stats = b.stats();
      CHECK_EQ(stats.completed + stats.failed, int64_t{kRequests});
      CHECK_EQ(stats.completed, int64_t{good});
      Outcomes after;
      submit_all(b, input, after, [] {});
      CHECK(after.wait_all());
      for (int k = 0; k < kRequests; ++k) CHECK(after.ok[k] == 1 && after.labels_match(k, ref));
      if (g_injected == 0) break;  // n is past every allocation of a round: all covered
      ++injected_rounds;
    }
    std::printf("bad_alloc injected at %ld allocation points\n", injected_rounds);
    CHECK(injected_rounds > 10);
  });
}
