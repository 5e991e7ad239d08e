// Threads: 8 C++ threads x 200 mixed calls (batches split and padded, unplanned shapes, lists
// of mixed sizes, logits, bad inputs) on one shared Segmenter and on a SegmenterPool give
// exactly the results of the same calls run serially. A watchdog ends the process if the
// threads do not finish in time (a deadlock), rather than leaving ctest to its timeout.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "check.h"

using ifa_rt::InvalidArgument;
using ifa_rt::Options;
using ifa_rt::TensorView;

namespace {

constexpr int kThreads = 8;
constexpr int kCalls = 200;
constexpr int kMix = 25;
constexpr auto kDeadline = std::chrono::seconds(100);

struct Inputs {
  std::vector<uint8_t> batch, odd;
  std::vector<float> bad;
};

// One call of the mix: its kind and the bytes it produced (labels or logits as raw bytes).
struct Outcome {
  bool rejected = false;
  std::vector<uint8_t> bytes;
  bool operator==(const Outcome& o) const { return rejected == o.rejected && bytes == o.bytes; }
};

template <class Runner>
Outcome call(Runner& r, const Inputs& in, int i) {
  const int k = i % kMix;
  Outcome out;
  const int64_t image = 32 * 48 * 3;
  try {
    if (k == kMix - 1) {  // a bad input
      TensorView v{in.bad.data(), ifa_rt::DType::float32, {32, 48, 3}, {}};
      r.segment(v);
    } else if (k % 6 == 5) {  // unplanned shape, 1 or 2 images
      out.bytes = r.segment(check::view(in.odd, {1 + k % 2, 37, 53, 3})).labels;
    } else if (k % 6 == 4) {  // a list of mixed sizes
      std::vector<uint8_t> a(32 * 48), b(37 * 53);
      TensorView va{in.batch.data() + (k % 5) * image, ifa_rt::DType::uint8, {32, 48, 3}, {}};
      r.segment({va, check::view(in.odd, {37, 53, 3})}, {a.data(), b.data()});
      out.bytes = a;
      out.bytes.insert(out.bytes.end(), b.begin(), b.end());
    } else if (k % 6 == 3) {  // logits of one image
      TensorView v{in.batch.data() + (k % 5) * image, ifa_rt::DType::uint8, {32, 48, 3}, {}};
      auto l = r.logits(v).logits;
      out.bytes.assign(reinterpret_cast<const uint8_t*>(l.data()),
                       reinterpret_cast<const uint8_t*>(l.data() + l.size()));
    } else {  // a batch of 1..5 (max_batch 2: split and padded)
      out.bytes = r.segment(check::view(in.batch, {1 + k % 5, 32, 48, 3})).labels;
    }
  } catch (const InvalidArgument&) {
    out.rejected = true;
  }
  return out;
}

// Runs kThreads x kCalls on `runner`; returns the number of calls whose outcome differs from
// `serial`, or exits the process if the deadline passes.
template <class Runner>
int hammer(Runner& runner, const Inputs& in, const std::vector<Outcome>& serial) {
  std::atomic<int> mismatches{0}, unexpected{0};
  std::mutex m;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCalls; ++c) {
        const int i = (t * 7 + c) % kMix;
        try {
          if (!(call(runner, in, i) == serial[i])) ++mismatches;
        } catch (const std::exception& e) {
          ++unexpected;
          std::cerr << "unexpected: " << e.what() << "\n";
        }
      }
      std::lock_guard<std::mutex> lock(m);
      ++done;
      cv.notify_one();
    });
  {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, kDeadline, [&] { return done == kThreads; })) {
      std::cerr << "test_threads: " << kThreads - done << " threads still running after " << kDeadline.count()
                << " s: deadlock?\n";
      std::_Exit(3);
    }
  }
  for (auto& t : threads) t.join();
  return mismatches + unexpected;
}

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    Inputs in{check::read_bin<uint8_t>("ref_5x32x48.input.bin"), check::read_bin<uint8_t>("ref_3x37x53.input.bin"),
              std::vector<float>(32 * 48 * 3)};
    const auto ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 2;
    o.threads = 1;
    o.plan_logits = true;

    ifa_rt::Segmenter s(check::path("tiny.ifa.pt"), o);
    std::vector<Outcome> serial;
    for (int i = 0; i < kMix; ++i) serial.push_back(call(s, in, i));
    CHECK(serial[kMix - 1].rejected);
    CHECK(serial[14].bytes == ref);  // call 14 is the 5-image batch: the reference
    const int64_t before = s.stats().calls;
    CHECK_EQ(hammer(s, in, serial), 0);
    int bad = 0;
    for (int t = 0; t < kThreads; ++t)
      for (int c = 0; c < kCalls; ++c) bad += (t * 7 + c) % kMix == kMix - 1;
    CHECK_EQ(s.stats().calls - before, int64_t{kThreads * kCalls - bad});
    CHECK_EQ(s.stats().allocations_after_warmup, int64_t{0});
    CHECK(call(s, in, 14).bytes == ref);

    ifa_rt::SegmenterPool pool(check::path("tiny.ifa.pt"), o, 3);
    CHECK_EQ(hammer(pool, in, serial), 0);
    int64_t total = 0;
    for (int e = 0; e < pool.size(); ++e) {
      CHECK(pool.engine(e).stats().calls > 0);
      total += pool.engine(e).stats().calls;
    }
    CHECK_EQ(total, int64_t{kThreads * kCalls - bad});
    std::cout << 2 * kThreads * kCalls << " threaded calls matched their serial results\n";
  });
}
