// The CPU arena: ArenaLayout's offsets (best fit, merged gaps, high-water mark, the same
// offsets for the same sequence), and an engine whose buckets and shapes share one arena
// sized by its largest bucket's peak live memory, allocation-free in any bucket order.
#include <random>

#include "arena_layout.h"
#include "check.h"

using ifa_rt::detail::ArenaLayout;

namespace {

void layout_checks() {
  ArenaLayout a;
  const size_t x = a.place(100), y = a.place(1000), z = a.place(64);
  CHECK_EQ(x, size_t{0});
  CHECK_EQ(y, size_t{128});   // 100 rounded up to 64-byte alignment
  CHECK_EQ(z, size_t{1152});  // 1000 -> 1024
  CHECK_EQ(a.top(), size_t{1216});
  a.release(y, 1000);  // a gap in the middle
  CHECK_EQ(a.gaps().size(), size_t{1});
  CHECK_EQ(a.place(200), size_t{128});  // best fit takes the gap, not the top
  CHECK_EQ(a.gaps().front().first, size_t{384});
  const size_t big = a.place(5000);  // fits no gap: above the top
  CHECK_EQ(big, size_t{1216});
  CHECK_EQ(a.high_water(), size_t{1216 + 5056});
  // Freeing everything merges the gaps and brings the top down to 0.
  a.release(x, 100);
  a.release(z, 64);
  a.release(128, 200);
  CHECK_EQ(a.top(), big + 5056);
  a.release(big, 5000);
  CHECK_EQ(a.top(), size_t{0});
  CHECK(a.gaps().empty());
  CHECK_EQ(a.in_use(), size_t{0});
  CHECK_EQ(a.high_water(), size_t{6272});
  a.restart_high_water();
  CHECK_EQ(a.high_water(), size_t{0});

  // A random sequence of places and releases, replayed from an empty layout, gets the same
  // offsets: what makes a slab sized by one call enough for every later call.
  std::mt19937 rng(7);
  std::vector<std::pair<bool, size_t>> ops;  // (place, bytes or index)
  std::vector<size_t> sizes;
  std::vector<size_t> live;
  for (int i = 0; i < 2000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      sizes.push_back(1 + rng() % 100000);
      live.push_back(sizes.size() - 1);
      ops.push_back({true, sizes.back()});
    } else {
      const size_t k = rng() % live.size();
      ops.push_back({false, live[k]});
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }
  for (size_t i : live) ops.push_back({false, i});
  auto replay = [&](ArenaLayout& l) {
    std::vector<size_t> offsets;
    for (const auto& [place, v] : ops)
      if (place) {
        offsets.push_back(l.place(v));
      } else {
        l.release(offsets[v], sizes[v]);
      }
    return offsets;
  };
  ArenaLayout l1, l2;
  const auto o1 = replay(l1);
  CHECK(o1 == replay(l2));
  CHECK(replay(l1) == o1);  // the same layout, reused
  CHECK_EQ(l1.top(), size_t{0});
  // No two live ranges overlap: checked on a byte map of the high-water extent.
  std::vector<int> owner(l2.high_water(), -1);
  std::vector<size_t> offsets;
  ArenaLayout l3;
  int64_t overlaps = 0;
  for (const auto& [place, v] : ops) {
    if (place) {
      const size_t id = offsets.size();
      offsets.push_back(l3.place(v));
      for (size_t b = offsets[id]; b < offsets[id] + sizes[id]; ++b) {
        overlaps += owner[b] != -1;
        owner[b] = static_cast<int>(id);
      }
    } else {
      for (size_t b = offsets[v]; b < offsets[v] + sizes[v]; ++b) owner[b] = -1;
      l3.release(offsets[v], sizes[v]);
    }
  }
  CHECK_EQ(overlaps, int64_t{0});
}

void engine_checks() {
  auto in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
  for (int threads : {1, 2}) {
    ifa_rt::Options o;
    o.shapes = {{32, 48}, {64, 96}};
    o.max_batch = 4;
    o.batch_invariant = false;
    o.threads = threads;
    ifa_rt::Segmenter s(check::path("tiny.ifa.pt"), o);
    const ifa_rt::Plan plan = s.plan();
    std::cout << threads << " threads: arena " << plan.arena_bytes << " bytes in " << plan.arena_blocks
              << " blocks, peak live " << plan.peak_live_bytes << " bytes, plan " << plan.total_bytes() << "\n";
    CHECK(plan.peak_live_bytes > 0);
    // One arena for 6 buckets: not the sum of their blocks (4x64x96 alone is about 60%).
    CHECK(plan.arena_bytes <= plan.peak_live_bytes * 3 / 2);
    // Calls on every bucket, in a random order, take no new memory.
    std::vector<uint8_t> big(4 * 64 * 96 * 3), labels(4 * 64 * 96);
    std::mt19937 rng(threads);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(rng());
    for (int i = 0; i < 60; ++i) {
      const int64_t b = 1 + static_cast<int64_t>(rng() % 4);
      if (rng() % 2)
        s.segment(check::view(in, {b, 32, 48, 3}), labels.data(), b * 32 * 48);
      else
        s.segment(check::view(big, {b, 64, 96, 3}), labels.data(), b * 64 * 96);
    }
    const ifa_rt::Stats st = s.stats();
    CHECK_EQ(st.fallback_calls, int64_t{0});
    CHECK_EQ(st.allocations_after_warmup, int64_t{0});
    CHECK_EQ(st.arena_bytes, plan.arena_bytes);
    CHECK_EQ(st.arena_peak_live_bytes, plan.peak_live_bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    layout_checks();
    engine_checks();
  });
}
