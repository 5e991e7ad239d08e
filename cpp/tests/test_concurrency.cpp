// Threads: concurrent calls on one Segmenter, and a SegmenterPool, give reference results.
#include <atomic>
#include <thread>

#include "check.h"

using ifa_rt::Options;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    auto in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    auto ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    auto odd_in = check::read_bin<uint8_t>("ref_3x37x53.input.bin");
    auto odd_ref = check::read_bin<uint8_t>("ref_3x37x53.labels.bin");
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 2;
    o.threads = 1;

    std::atomic<int> bad{0};
    auto worker = [&](auto&& segment, int id) {
      for (int i = 0; i < 20; ++i) {
        const int64_t b = 1 + (i + id) % 5;
        bool odd = (i + id) % 4 == 0;
        auto r = odd ? segment(check::view(odd_in, {3, 37, 53, 3})) : segment(check::view(in, {b, 32, 48, 3}));
        const auto& want = odd ? odd_ref : ref;
        if (!std::equal(r.labels.begin(), r.labels.end(), want.begin())) bad++;
      }
    };

    ifa_rt::Segmenter s(check::path("tiny.ifa.pt"), o);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back(
          worker, [&](const ifa_rt::TensorView& v) { return s.segment(v); }, t);
    for (auto& t : threads) t.join();
    CHECK_EQ(bad.load(), 0);
    CHECK_EQ(s.stats().calls, int64_t{80});

    ifa_rt::SegmenterPool pool(check::path("tiny.ifa.pt"), o, 2);
    CHECK_EQ(pool.size(), 2);
    threads.clear();
    for (int t = 0; t < 4; ++t)
      threads.emplace_back(
          worker, [&](const ifa_rt::TensorView& v) { return pool.segment(v); }, t);
    for (auto& t : threads) t.join();
    CHECK_EQ(bad.load(), 0);
    CHECK_EQ(pool.engine(0).stats().calls + pool.engine(1).stats().calls, int64_t{80});
    CHECK_THROWS(ifa_rt::InvalidArgument, ifa_rt::SegmenterPool(check::path("tiny.ifa.pt"), o, 0),
                 "SegmenterPool: 'size': expected an integer in [1, 256], got 0");
  });
}
