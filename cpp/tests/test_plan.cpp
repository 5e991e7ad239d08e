// Buckets and the batching schedule (pure logic).
#include "check.h"
#include "plan.h"

using namespace ifa_rt::detail;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    CHECK(bucket_batches(1) == (std::vector<int64_t>{1}));
    CHECK(bucket_batches(4) == (std::vector<int64_t>{1, 2, 4}));
    CHECK(bucket_batches(6) == (std::vector<int64_t>{1, 2, 4, 6}));
    auto buckets = make_buckets({{32, 48}, {64, 64}}, 2);
    CHECK_EQ(buckets.size(), size_t{4});
    CHECK(buckets[2].name() == "1x64x64");

    auto runs = schedule(7, bucket_batches(4), true);  // 4 + 3 padded to 4
    CHECK_EQ(runs.size(), size_t{2});
    CHECK_EQ(runs[0].count, int64_t{4});
    CHECK_EQ(runs[1].first, int64_t{4});
    CHECK_EQ(runs[1].count, int64_t{3});
    CHECK_EQ(runs[1].batch, int64_t{4});
    runs = schedule(5, bucket_batches(8), true);  // padded up to 8
    CHECK_EQ(runs.size(), size_t{1});
    CHECK_EQ(runs[0].batch, int64_t{8});
    runs = schedule(2, bucket_batches(6), true);
    CHECK_EQ(runs[0].batch, int64_t{2});
    runs = schedule(3, bucket_batches(1), true);
    CHECK_EQ(runs.size(), size_t{3});
    // CPU: a remainder is split into planned batches, never padded.
    runs = schedule(7, bucket_batches(4), false);  // 4 + 2 + 1
    CHECK_EQ(runs.size(), size_t{3});
    CHECK_EQ(runs[1].batch, int64_t{2});
    CHECK_EQ(runs[2].first, int64_t{6});
    CHECK_EQ(runs[2].batch, int64_t{1});
    runs = schedule(5, bucket_batches(6), false);  // 4 + 1
    CHECK_EQ(runs.size(), size_t{2});
    CHECK_EQ(runs[0].batch, int64_t{4});
    // Every image is covered once, in order.
    for (int64_t n = 1; n < 40; ++n)
      for (int64_t mb : {1, 2, 3, 4, 8}) {
        for (bool pad : {true, false}) {
          int64_t next = 0;
          for (const Run& r : schedule(n, bucket_batches(mb), pad)) {
            CHECK_EQ(r.first, next);
            CHECK(r.count >= 1 && r.count <= r.batch && r.batch <= mb);
            if (!pad) CHECK_EQ(r.count, r.batch);
            next += r.count;
          }
          CHECK_EQ(next, n);
        }
      }
  });
}
