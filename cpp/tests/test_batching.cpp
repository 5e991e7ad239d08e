// Batching: splits, padding, mixed sizes; results keep input order and match the reference.
#include "check.h"

using ifa_rt::Options;
using ifa_rt::Segmenter;
using ifa_rt::TensorView;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    auto a_in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    auto a_ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    auto b_in = check::read_bin<uint8_t>("ref_3x37x53.input.bin");
    auto b_ref = check::read_bin<uint8_t>("ref_3x37x53.labels.bin");
    const int64_t a_px = 32 * 48, b_px = 37 * 53;

    for (int64_t max_batch : {1, 2, 4, 8}) {
      Options o;
      o.shapes = {{32, 48}, {37, 53}};
      o.max_batch = max_batch;
      o.batch_invariant = false;  // batched buckets; the default is checked below
      Segmenter s(check::path("tiny.ifa.pt"), o);
      auto r = s.segment(check::view(a_in, {5, 32, 48, 3}));
      CHECK(r.labels == a_ref);
      // CPU splits a remainder: 3 images on max_batch 4 -> runs of 2 and 1, no padding.
      auto r3 = s.segment(check::view(b_in, {3, 37, 53, 3}));
      CHECK(r3.labels == b_ref);
      auto st = s.stats();
      CHECK_EQ(st.fallback_calls, int64_t{0});
      if (max_batch == 4) CHECK_EQ(st.bucket_runs, int64_t{4});  // 4 + 1, then 2 + 1
      if (max_batch == 8) CHECK_EQ(st.bucket_runs, int64_t{4});  // 4 + 1, then 2 + 1
      CHECK_EQ(st.padded_images, int64_t{0});

      // A list of mixed sizes, interleaved: outputs land in input order.
      std::vector<TensorView> images;
      std::vector<std::vector<uint8_t>> outs;
      std::vector<const uint8_t*> want;
      for (int i = 0; i < 8; ++i) {
        TensorView v;
        if (i % 3 == 1) {
          int k = (i / 3) % 3;
          v.data = b_in.data() + k * b_px * 3;
          v.shape = {37, 53, 3};
          want.push_back(b_ref.data() + k * b_px);
          outs.emplace_back(b_px);
        } else {
          int k = (7 * i) % 5;
          v.data = a_in.data() + k * a_px * 3;
          v.shape = {32, 48, 3};
          want.push_back(a_ref.data() + k * a_px);
          outs.emplace_back(a_px);
        }
        images.push_back(v);
      }
      std::vector<uint8_t*> ptrs;
      for (auto& o2 : outs) ptrs.push_back(o2.data());
      s.segment(images, ptrs);
      for (size_t i = 0; i < images.size(); ++i) CHECK(std::equal(outs[i].begin(), outs[i].end(), want[i]));
    }

    {  // The default, batch-invariant: one 1xHxW bucket per shape, every image run alone.
      Options inv;
      inv.shapes = {{32, 48}};
      inv.max_batch = 4;
      Segmenter s(check::path("tiny.ifa.pt"), inv);
      CHECK(s.options().batch_invariant);
      CHECK_EQ(s.options().max_batch, int64_t{4});  // still bounds a call and a Batcher batch
      CHECK_EQ(s.plan().buckets.size(), size_t{1});
      CHECK_EQ(s.plan().buckets[0].batch, int64_t{1});
      CHECK(s.segment(check::view(a_in, {5, 32, 48, 3})).labels == a_ref);
      CHECK(s.segment(check::view(b_in, {3, 37, 53, 3})).labels == b_ref);  // unplanned
      auto st = s.stats();
      CHECK_EQ(st.bucket_runs, int64_t{5});
      CHECK_EQ(st.fallback_calls, int64_t{3});
      CHECK_EQ(st.padded_images, int64_t{0});
    }

    {  // learn_shapes: an unplanned size met kLearnAfter times is planned; at most learn_shapes.
      Options l;
      l.shapes = {{32, 48}};
      l.learn_shapes = 1;
      Segmenter s(check::path("tiny.ifa.pt"), l);
      auto one_b = check::view(b_in, {1, 37, 53, 3});
      const std::vector<uint8_t> b0(b_ref.begin(), b_ref.begin() + b_px);
      for (int i = 0; i < ifa_rt::kLearnAfter - 1; ++i) CHECK(s.segment(one_b).labels == b0);
      CHECK(s.stats().learned_shapes.empty());
      CHECK(s.segment(one_b).labels == b0);  // planned by this call, then run on its bucket
      auto st = s.stats();
      CHECK_EQ(st.learned_shapes.size(), size_t{1});
      CHECK(st.learned_shapes[0] == (ifa_rt::Shape{37, 53}));
      CHECK_EQ(st.fallback_calls, int64_t{ifa_rt::kLearnAfter - 1});
      CHECK_EQ(st.bucket_runs, int64_t{1});
      CHECK_EQ(s.plan().buckets.size(), size_t{2});
      CHECK(s.plan().buckets[1].name() == "1x37x53");
      CHECK(s.segment(check::view(b_in, {3, 37, 53, 3})).labels == b_ref);  // 3 runs on it
      CHECK_EQ(s.stats().bucket_runs, int64_t{4});
      CHECK_EQ(s.stats().allocations_after_warmup, st.allocations_after_warmup);
      // The bound: a second repeated size stays unplanned.
      TensorView part = check::view(a_in, {1, 30, 40, 3});
      part.strides = {32 * 48 * 3, 48 * 3, 3, 1};  // a crop of the first 32x48 image
      auto first = s.segment(part).labels;
      for (int i = 0; i < ifa_rt::kLearnAfter + 1; ++i) CHECK(s.segment(part).labels == first);
      CHECK_EQ(s.stats().learned_shapes.size(), size_t{1});
      CHECK_EQ(s.stats().fallback_calls, int64_t{ifa_rt::kLearnAfter - 1 + ifa_rt::kLearnAfter + 2});

      Options never = l;
      never.learn_shapes = 0;
      Segmenter n(check::path("tiny.ifa.pt"), never);
      for (int i = 0; i < ifa_rt::kLearnAfter + 1; ++i) CHECK(n.segment(one_b).labels == b0);
      CHECK(n.stats().learned_shapes.empty());
      CHECK_EQ(n.plan().buckets.size(), size_t{1});
    }

    // A list with an unplanned size is served on the fallback path, in order.
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 2;
    Segmenter s(check::path("tiny.ifa.pt"), o);
    std::vector<TensorView> images = {check::view(a_in, {32, 48, 3}), check::view(b_in, {37, 53, 3})};
    std::vector<uint8_t> o1(a_px), o2(b_px);
    s.segment(images, {o1.data(), o2.data()});
    CHECK(std::equal(o1.begin(), o1.end(), a_ref.begin()));
    CHECK(std::equal(o2.begin(), o2.end(), b_ref.begin()));
    CHECK_EQ(s.stats().fallback_calls, int64_t{1});
    CHECK_THROWS(ifa_rt::InvalidArgument, s.segment(images, {o1.data()}),
                 "Segmenter.segment: output 'labels': expected 2 buffers (one per image), got 1");
    std::vector<TensorView> batched = {check::view(a_in, {2, 32, 48, 3})};
    CHECK_THROWS(ifa_rt::InvalidArgument, s.segment(batched, {o1.data()}),
                 "Segmenter.segment: input 'images[0]': expected shape [H,W,3], got [2,32,48,3] (rank 4)");
  });
}
