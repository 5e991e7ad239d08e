// Segmenter on CPU: the labels and logits of TorchScript run from Python (reference files),
// on planned and unplanned shapes, strict mode, input errors, plan and stats.
#include <cmath>

#include "check.h"
#include "ifa_rt/version.h"

using ifa_rt::InvalidArgument;
using ifa_rt::Options;
using ifa_rt::Segmenter;
using ifa_rt::TensorView;

namespace {

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

void check_reference(Segmenter& s, const std::string& stem, std::vector<int64_t> shape) {
  auto input = check::read_bin<uint8_t>(stem + ".input.bin");
  auto labels = check::read_bin<uint8_t>(stem + ".labels.bin");
  auto logits = check::read_bin<float>(stem + ".logits.bin");
  auto r = s.segment(check::view(input, shape));
  CHECK(r.shape == (std::vector<int64_t>{shape[0], shape[1], shape[2]}));
  CHECK(r.labels == labels);
  auto l = s.logits(check::view(input, shape));
  CHECK_EQ(l.logits.size(), logits.size());
  float worst = 0;
  for (size_t i = 0; i < logits.size() && i < l.logits.size(); ++i)
    worst = std::max(worst, std::fabs(l.logits[i] - logits[i]));
  CHECK(worst <= 1e-4f * max_abs(logits));
  // One image, [H,W,3] -> [H,W].
  auto one = s.segment(check::view(input, {shape[1], shape[2], 3}));
  CHECK(one.shape == (std::vector<int64_t>{shape[1], shape[2]}));
  CHECK(std::equal(one.labels.begin(), one.labels.end(), labels.begin()));
}

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    for (const std::string runtime : {"static", "jit", "jit+optimize"}) {
      Options o;
      o.shapes = {{32, 48}};
      o.max_batch = 4;
      o.batch_invariant = false;  // batched buckets 1, 2, 4
      o.learn_shapes = 0;         // the unplanned path stays unplanned (learning: test_batching)
      o.optimize = runtime == "jit+optimize";
      o.runtime = o.optimize ? "jit" : runtime;
      o.plan_logits = true;
      Segmenter s(check::path("tiny.ifa.pt"), o);
      CHECK(s.options().runtime == o.runtime);
      check_reference(s, "ref_5x32x48", {5, 32, 48, 3});  // 4 + 1, planned
      check_reference(s, "ref_3x37x53", {3, 37, 53, 3});  // odd size, unplanned
      auto st = s.stats();
      CHECK_EQ(st.calls, int64_t{6});
      CHECK_EQ(st.images, int64_t{5 + 5 + 1 + 3 + 3 + 1});
      CHECK_EQ(st.fallback_calls, int64_t{3});
      CHECK_EQ(st.bucket_runs, int64_t{5});
      CHECK_EQ(st.buckets.size(), size_t{3});
      CHECK_EQ(st.buckets[2].calls, int64_t{2});  // the 4-bucket: segment + logits
      CHECK(st.first_call_ms > 0 && st.construction_ms >= st.first_call_ms);

      auto plan = s.plan();
      CHECK(plan.device == "cpu");
      CHECK_EQ(plan.buckets.size(), size_t{3});
      CHECK(plan.buffers[0].name == "input 1x32x48x3");
      CHECK_EQ(plan.buffers[2].bytes, int64_t{4 * 32 * 48 * 3});
      CHECK(plan.total_bytes() > 4 * 32 * 48 * 3);
    }

    // Logits not planned: served, counted as fallback.
    {
      Options o;
      o.shapes = {{32, 48}};
      Segmenter s(check::path("tiny.ifa.pt"), o);
      auto input = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
      s.logits(check::view(input, {32, 48, 3}));
      CHECK_EQ(s.stats().fallback_calls, int64_t{1});
    }

    // Strict: an unplanned shape is an error; a planned one is served.
    Options o;
    o.shapes = {{32, 48}};
    o.strict = true;
    Segmenter s(check::path("tiny.ifa.pt"), o);
    auto input = check::read_bin<uint8_t>("ref_3x37x53.input.bin");
    CHECK_THROWS(InvalidArgument, s.segment(check::view(input, {3, 37, 53, 3})),
                 "Segmenter.segment: input 'images': expected a planned shape (32x48) in strict mode, got 37x53");
    CHECK_EQ(s.stats().calls, int64_t{0});

    // Input errors.
    std::vector<uint8_t> buf(4 * 32 * 48 * 4);
    TensorView v = check::view(buf, {32, 48, 3});
    v.dtype = ifa_rt::DType::float32;
    CHECK_THROWS(InvalidArgument, s.segment(v), "Segmenter.segment: input 'images': expected dtype uint8, got float32");
    CHECK_THROWS(InvalidArgument, s.logits(v), "Segmenter.logits: input 'images': expected dtype uint8, got float32");
    CHECK_THROWS(InvalidArgument, s.segment(check::view(buf, {32, 48})),
                 "Segmenter.segment: input 'images': expected shape [H,W,3] or [B,H,W,3], got [32,48] (rank 2)");
    CHECK_THROWS(
        InvalidArgument, s.segment(check::view(buf, {32, 48, 4})),
        "Segmenter.segment: input 'images': expected 3 channels (RGB, last dimension), got 4 (shape [32,48,4])");
    CHECK_THROWS(InvalidArgument, s.segment(check::view(buf, {0, 32, 48, 3})),
                 "Segmenter.segment: input 'images': expected a non-empty image batch, got shape [0,32,48,3]");
    CHECK_THROWS(
        InvalidArgument, s.segment(check::view(buf, {8, 8, 3})),
        "Segmenter.segment: input 'images': expected height and width >= 16 (the artifact's min_size), got 8x8");
    TensorView neg = check::view(buf, {32, 48, 3});
    neg.strides = {-144, 3, 1};
    CHECK_THROWS(InvalidArgument, s.segment(neg),
                 "Segmenter.segment: input 'images': expected non-negative strides, got [-144,3,1]");
    std::vector<uint8_t> small(10);
    CHECK_THROWS(InvalidArgument, s.segment(check::view(buf, {32, 48, 3}), small.data(), 10),
                 "Segmenter.segment: output 'labels': expected 1536 uint8 elements, got 10");
    // The engine still works after errors.
    auto r = s.segment(check::view(buf, {32, 48, 3}));
    CHECK_EQ(r.labels.size(), size_t{32 * 48});

    // Strided input (every other column of a wider image) matches its contiguous copy.
    std::vector<uint8_t> wide(32 * 96 * 3), packed(32 * 48 * 3);
    for (size_t i = 0; i < wide.size(); ++i) wide[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 48; ++x)
        for (int c = 0; c < 3; ++c) packed[(y * 48 + x) * 3 + c] = wide[(y * 96 + 2 * x) * 3 + c];
    TensorView strided = check::view(wide, {32, 48, 3});
    strided.strides = {96 * 3, 6, 1};
    CHECK(s.segment(strided).labels == s.segment(check::view(packed, {32, 48, 3})).labels);

    // device="cuda": a clear "no CUDA device" error where there is none (or no CUDA engine);
    // where a GPU exists the engine builds and serves the reference labels.
    Options c;
    c.device = "cuda";
    c.shapes = {{32, 48}};
    bool built = false;
    try {
      Segmenter gpu(check::path("tiny.ifa.pt"), c);
      built = true;
      CHECK(ifa_rt::has_cuda_engine());
      check_reference(gpu, "ref_5x32x48", {5, 32, 48, 3});
      // A padded run copies only its n images to the device (the pad rows keep the previous
      // run's), and still returns exactly their labels.
      Options b = c;
      b.max_batch = 4;
      b.batch_invariant = false;
      Segmenter batched(check::path("tiny.ifa.pt"), b);
      const auto input = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
      const auto labels = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
      const size_t px = 32 * 48;
      CHECK(batched.segment(check::view(input, {4, 32, 48, 3})).labels ==
            std::vector<uint8_t>(labels.begin(), labels.begin() + 4 * px));
      const std::vector<uint8_t> last3(input.begin() + 2 * px * 3, input.end());
      CHECK(batched.segment(check::view(last3, {3, 32, 48, 3})).labels ==
            std::vector<uint8_t>(labels.begin() + 2 * px, labels.end()));
    } catch (const ifa_rt::Error& e) {
      CHECK(!built);
      CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
    }
  });
}
