// Batcher: results equal direct calls, batches form under concurrency, max_delay is a bound
// (a full batch does not wait for it, a lone request waits about that long), a bad request
// fails alone, close() drains or cancels. A watchdog ends the process if anything hangs.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "check.h"
#include "ifa_rt/batcher.h"

using ifa_rt::Batcher;
using ifa_rt::BatcherOptions;
using ifa_rt::Cancelled;
using ifa_rt::InvalidArgument;
using ifa_rt::Options;
using ifa_rt::Result;
using ifa_rt::Segmenter;
using ifa_rt::SegmenterPool;
using ifa_rt::TensorView;
using Clock = std::chrono::steady_clock;

// check.h's CHECK_EQ prints numbers; strings need their own.
#define CHECK_STR(a, b)                                                                           \
  do {                                                                                            \
    const std::string _got = (a), _want = (b);                                                    \
    if (_got != _want) ::check::fail(__FILE__, __LINE__, "got:  " + _got + "\n  want: " + _want); \
  } while (0)

namespace {

constexpr int64_t kPx = 32 * 48;  // the planned shape of the reference data
constexpr auto kWait = std::chrono::seconds(30);

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Image k of a [N,H,W,3] reference input.
TensorView image(const std::vector<uint8_t>& batch, int64_t k, int64_t h = 32, int64_t w = 48) {
  TensorView v;
  v.data = batch.data() + k * h * w * 3;
  v.shape = {h, w, 3};
  return v;
}

bool equal_ref(const Result& r, const std::vector<uint8_t>& ref, int64_t k, int64_t px = kPx) {
  return r.labels.size() == static_cast<size_t>(px) &&
         std::equal(r.labels.begin(), r.labels.end(), ref.begin() + k * px);
}

// Waits for a future with a bound, so a bug shows as a failed check, not a hung test.
template <class T>
bool ready(std::future<T>& f) {
  return f.wait_for(kWait) == std::future_status::ready;
}

template <class E>
std::string error_of(std::future<Result>& f) {
  try {
    f.get();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong type: ") + e.what();
  }
  return "no error";
}

}  // namespace

int main(int argc, char** argv) {
  check::watchdog("test_batcher", 100);

  return check::run(argc, argv, [] {
    const auto a_in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    const auto a_ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    const auto b_in = check::read_bin<uint8_t>("ref_3x37x53.input.bin");
    const auto b_ref = check::read_bin<uint8_t>("ref_3x37x53.labels.bin");
    const int64_t b_px = 37 * 53;
    Options o;
    o.shapes = {{32, 48}, {37, 53}};
    o.max_batch = 4;
    o.threads = 1;
    Segmenter seg(check::path("tiny.ifa.pt"), o);

    // Options: validated by name; max_batch 0 resolves to the engine's.
    CHECK_THROWS(InvalidArgument, Batcher(seg, BatcherOptions{0, -1}),
                 "BatcherOptions: 'max_delay_us': expected microseconds in [0, 60000000], got -1");
    CHECK_THROWS(InvalidArgument, Batcher(seg, BatcherOptions{2000, 0}),
                 "BatcherOptions: 'max_batch': expected an integer in [0, 1024] (0: the engine's), got 2000");
    CHECK_EQ(Batcher(seg).options().max_batch, int64_t{4});

    // A full batch runs at once: 4 submits in a row with a 2 s delay form one batch of 4
    // well before the delay, with the reference labels in order.
    {
      Batcher b(seg, BatcherOptions{0, 2'000'000});
      auto t0 = Clock::now();
      std::vector<std::future<Result>> fs;
      for (int k = 0; k < 4; ++k) fs.push_back(b.submit(image(a_in, k)));
      for (int k = 0; k < 4; ++k) {
        CHECK(ready(fs[k]));
        CHECK(equal_ref(fs[k].get(), a_ref, k));
      }
      CHECK(ms_since(t0) < 1000.0);
      auto st = b.stats();
      CHECK_EQ(st.batches, int64_t{1});
      CHECK_EQ(st.batch_sizes[4], int64_t{1});
      CHECK_EQ(st.mean_batch_size(), 4.0);
      CHECK_EQ(st.completed, int64_t{4});
    }

    // max_delay bounds the wait of a lone request: it waits for company about that long
    // (not less, not much more), then runs alone. 5 submits with max_batch 4: the first 4 run
    // at once, the fifth after the delay.
    {
      const int64_t delay_us = 150'000;
      Batcher b(seg, BatcherOptions{0, delay_us});
      auto t0 = Clock::now();
      auto lone = b.submit(image(a_in, 2));
      CHECK(ready(lone));
      const double waited = ms_since(t0);
      CHECK(equal_ref(lone.get(), a_ref, 2));
      CHECK(waited >= 150.0);
      CHECK(waited < 150.0 + 1000.0);  // a loaded 2-core machine may schedule late, not never
      auto st = b.stats();
      CHECK(st.max_queue_us >= 150'000.0 && st.max_queue_us < 1'150'000.0);

      std::vector<std::future<Result>> fs;
      for (int k = 0; k < 5; ++k) fs.push_back(b.submit(image(a_in, k)));
      for (int k = 0; k < 5; ++k) {
        CHECK(ready(fs[k]));
        CHECK(equal_ref(fs[k].get(), a_ref, k));
      }
      st = b.stats();
      CHECK_EQ(st.batches, int64_t{3});  // the lone one, 4, 1
      CHECK_EQ(st.batch_sizes[1], int64_t{2});
      CHECK_EQ(st.batch_sizes[4], int64_t{1});
    }

    // Shapes batch apart, each in order: A B A B A -> one batch of 3 A and one of 2 B. (The
    // 1 s windows here only need to outlast a scheduling stall between two submits.)
    {
      Batcher b(seg, BatcherOptions{0, 1'000'000});
      std::vector<std::future<Result>> fs;
      for (int k = 0; k < 5; ++k) fs.push_back(k % 2 ? b.submit(image(b_in, k / 2, 37, 53)) : b.submit(image(a_in, k)));
      for (int k = 0; k < 5; ++k) {
        CHECK(ready(fs[k]));
        Result r = fs[k].get();
        CHECK(k % 2 ? equal_ref(r, b_ref, k / 2, b_px) : equal_ref(r, a_ref, k));
        CHECK((r.shape == std::vector<int64_t>{k % 2 ? 37 : 32, k % 2 ? 53 : 48}));
      }
      auto st = b.stats();
      CHECK_EQ(st.batches, int64_t{2});
      CHECK_EQ(st.batch_sizes[3], int64_t{1});
      CHECK_EQ(st.batch_sizes[2], int64_t{1});
      CHECK_EQ(seg.stats().fallback_calls, int64_t{0});
    }

    // An error reaches only its own request: a null image among good ones of the same shape
    // (the batched call fails, each is rerun alone), a float image (another shape key), and
    // requests rejected before queueing.
    {
      Batcher b(seg, BatcherOptions{0, 1'000'000});
      std::vector<float> floats(kPx * 3);
      TensorView null_view = image(a_in, 0);
      null_view.data = nullptr;
      TensorView float_view{floats.data(), ifa_rt::DType::float32, {32, 48, 3}, {}};
      auto g0 = b.submit(image(a_in, 0));
      auto bad = b.submit(null_view);
      auto g1 = b.submit(image(a_in, 1));
      auto fl = b.submit(float_view);
      auto rank4 = b.submit(check::view(a_in, {2, 32, 48, 3}));
      auto empty = b.submit(check::view(a_in, {0, 48, 3}));
      CHECK(ready(g0) && ready(g1) && ready(bad) && ready(fl) && ready(rank4) && ready(empty));
      CHECK(equal_ref(g0.get(), a_ref, 0));
      CHECK(equal_ref(g1.get(), a_ref, 1));
      CHECK_STR(error_of<InvalidArgument>(bad), "Segmenter.segment: input 'images': expected data, got a null pointer");
      CHECK_STR(error_of<InvalidArgument>(fl), "Segmenter.segment: input 'images': expected dtype uint8, got float32");
      CHECK_STR(error_of<InvalidArgument>(rank4),
                "Batcher.submit: input 'image': expected shape [H,W,3], got [2,32,48,3] (rank 4)");
      CHECK_STR(error_of<InvalidArgument>(empty),
                "Batcher.submit: input 'image': expected height and width in [1, 16384], got shape [0,48,3]");
      std::vector<uint8_t> small(10);
      std::atomic<int> calls{0};
      std::string message;
      b.submit(image(a_in, 0), small.data(), 10, [&](std::exception_ptr e) {
        ++calls;
        try {
          std::rethrow_exception(e);
        } catch (const InvalidArgument& x) {
          message = x.what();
        }
      });
      CHECK_EQ(calls.load(), 1);  // rejected on the submitting thread, before queueing
      CHECK_STR(message, std::string("Batcher.submit: output 'labels': expected 1536 uint8 elements, got 10"));
      CHECK_THROWS(InvalidArgument, b.submit(image(a_in, 0), small.data(), 10, nullptr),
                   "Batcher.submit: 'done': expected a callback, got an empty function");
      auto st = b.stats();
      CHECK_EQ(st.retried_batches, int64_t{1});
      CHECK_EQ(st.failed, int64_t{5});
      CHECK_EQ(st.completed, int64_t{2});
      CHECK_EQ(st.requests, st.completed + st.failed + st.cancelled);
      // The engine still serves after the errors.
      auto again = b.submit(image(a_in, 3));
      CHECK(ready(again) && equal_ref(again.get(), a_ref, 3));
    }

    // A throwing callback does not take the others of its batch down.
    {
      Batcher b(seg, BatcherOptions{0, 300'000});
      std::vector<uint8_t> out(kPx);
      b.submit(image(a_in, 0), out.data(), kPx, [](std::exception_ptr) { throw std::runtime_error("callback bug"); });
      auto f = b.submit(image(a_in, 1));
      CHECK(ready(f) && equal_ref(f.get(), a_ref, 1));
    }

    // Concurrency: 8 threads x 40 submits each (waiting on each result, as callers do) give
    // the reference labels, and batches form (mean size > 1) on one engine.
    auto hammer = [&](auto& engine, int64_t delay_us) {
      Batcher b(engine, BatcherOptions{0, delay_us});
      std::atomic<int> wrong{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
          for (int c = 0; c < 40; ++c) {
            const int k = (t + c) % 5;
            const bool odd = (t + c) % 7 == 0;
            auto f = odd ? b.submit(image(b_in, k % 3, 37, 53)) : b.submit(image(a_in, k));
            if (!ready(f)) {
              ++wrong;
              continue;
            }
            Result r = f.get();
            if (!(odd ? equal_ref(r, b_ref, k % 3, b_px) : equal_ref(r, a_ref, k))) ++wrong;
          }
        });
      for (auto& t : threads) t.join();
      CHECK_EQ(wrong.load(), 0);
      auto st = b.stats();
      CHECK_EQ(st.completed, int64_t{320});
      CHECK_EQ(st.batched_requests, int64_t{320});
      std::printf("hammer: %lld batches, mean batch size %.2f, mean queue %.0f us\n",
                  static_cast<long long>(st.batches), st.mean_batch_size(), st.mean_queue_us);
      return st;
    };
    CHECK(hammer(seg, 2000).mean_batch_size() > 1.5);
    CHECK(hammer(seg, 0).mean_batch_size() > 1.0);  // no delay: batches form while it runs
    {
      Options po = o;
      po.max_batch = 2;
      SegmenterPool pool(check::path("tiny.ifa.pt"), po, 2);
      auto st = hammer(pool, 1000);
      CHECK(st.batch_sizes.size() == 3);  // max_batch 0 -> the pool's engines' 2
      CHECK(st.mean_batch_size() > 1.0);
    }

    // close(true) (also the destructor) runs every queued request; close(false) cancels the
    // queued ones and a batch still gathering; later submits fail; close is idempotent.
    {
      std::vector<std::future<Result>> fs;
      {
        Batcher b(seg, BatcherOptions{1, 10'000'000});  // batches of 1: the rest stay queued
        for (int k = 0; k < 6; ++k) fs.push_back(b.submit(image(a_in, k % 5)));
      }  // destructor: drain
      for (int k = 0; k < 6; ++k) CHECK(ready(fs[k]) && equal_ref(fs[k].get(), a_ref, k % 5));

      Batcher b(seg, BatcherOptions{0, 10'000'000});  // waits 10 s for a full batch
      auto f0 = b.submit(image(a_in, 0));
      auto f1 = b.submit(image(b_in, 0, 37, 53));  // queued behind the gathering batch
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto t0 = Clock::now();
      b.close(false);
      CHECK(ms_since(t0) < 5000.0);
      CHECK(ready(f0) && ready(f1));
      CHECK_STR(error_of<Cancelled>(f0), "Batcher: request cancelled: the batcher was closed without draining");
      CHECK_STR(error_of<Cancelled>(f1), "Batcher: request cancelled: the batcher was closed without draining");
      CHECK(b.closed());
      auto late = b.submit(image(a_in, 0));
      CHECK(ready(late));
      CHECK_STR(error_of<ifa_rt::Error>(late), "Batcher.submit: the batcher is closed");
      b.close(true);
      auto st = b.stats();
      CHECK_EQ(st.cancelled, int64_t{2});
      CHECK_EQ(st.failed, int64_t{1});
      CHECK_EQ(st.requests, int64_t{3});
    }

    // A drained close with a long delay does not wait for the delay.
    {
      Batcher b(seg, BatcherOptions{0, 10'000'000});
      auto f = b.submit(image(a_in, 4));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      auto t0 = Clock::now();
      b.close(true);
      CHECK(ms_since(t0) < 5000.0);
      CHECK(ready(f) && equal_ref(f.get(), a_ref, 4));
    }
  });
}
