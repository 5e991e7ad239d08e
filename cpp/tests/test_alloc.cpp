// Memory plan on CPU: after warm-up, 100+ steady-state calls on planned buckets take no new
// block from the system (every allocation is served from the engine's block cache), also
// with 2 intra-op threads, whose worker allocations belong to the running call.
#include "alloc_counter.h"
#include "check.h"

using ifa_rt::Options;
using ifa_rt::Segmenter;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    auto in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    for (int threads : {1, 2})
      for (const char* runtime : {"static", "jit", "jit+optimize"}) {
        Options o;
        o.optimize = std::string(runtime) == "jit+optimize";
        o.shapes = {{32, 48}};
        o.max_batch = 4;
        o.runtime = o.optimize ? "jit" : runtime;
        o.plan_logits = true;
        o.threads = threads;
        Segmenter s(check::path("tiny.ifa.pt"), o);
        CHECK(ifa_rt::detail::counting_allocator_installed());
        std::vector<uint8_t> labels(5 * 32 * 48);
        std::vector<float> logits(5 * 5 * 32 * 48);
        const int64_t unattributed0 = ifa_rt::detail::unattributed_allocations();
        const int64_t in_calls0 = ifa_rt::detail::unattributed_allocations_in_calls();
        for (int i = 0; i < 120; ++i) {
          // 5 = 4 + 1 (zero-copy run on the 4-bucket, staged run on the 1-bucket);
          // 3 = 2 + 1; 2 = 2-bucket.
          const int64_t b = i % 3 == 0 ? 5 : i % 3 == 1 ? 3 : 2;
          s.segment(check::view(in, {b, 32, 48, 3}), labels.data(), b * 32 * 48);
          if (i % 10 == 0) s.logits(check::view(in, {b, 32, 48, 3}), logits.data(), b * 5 * 32 * 48);
        }
        auto st = s.stats();
        std::cout << runtime << ", " << threads << " threads: bucket runs " << st.bucket_runs << ", new allocations "
                  << st.allocations_after_warmup << " (" << st.bytes_allocated_after_warmup
                  << " bytes), cached allocations " << st.cached_allocations_after_warmup << ", unattributed "
                  << ifa_rt::detail::unattributed_allocations() - unattributed0 << ", plan " << s.plan().total_bytes()
                  << " bytes\n";
        CHECK_EQ(st.fallback_calls, int64_t{0});
        CHECK(st.bucket_runs >= 160);
        CHECK_EQ(st.allocations_after_warmup, int64_t{0});
        CHECK_EQ(st.bytes_allocated_after_warmup, int64_t{0});
        CHECK(st.cached_allocations_after_warmup > 0);
        CHECK_EQ(ifa_rt::detail::unattributed_allocations() - unattributed0, int64_t{0});
        CHECK_EQ(ifa_rt::detail::unattributed_allocations_in_calls() - in_calls0, int64_t{0});
      }
  });
}
