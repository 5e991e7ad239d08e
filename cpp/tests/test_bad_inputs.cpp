// Bad inputs and options through the C++ API: each raises ifa_rt::InvalidArgument (or
// ifa_rt::Error for a missing device) with the exact message, and the same Segmenter still
// returns the reference labels afterwards. Positive-stride views (non-contiguous, zero-stride
// broadcasts, channels-first memory seen as HWC) are accepted; negative strides are rejected
// in C++ (Python copies such views first: docs/reliability.md).
#include "check.h"
#include "ifa_rt/version.h"

using ifa_rt::DType;
using ifa_rt::Error;
using ifa_rt::InvalidArgument;
using ifa_rt::Options;
using ifa_rt::Segmenter;
using ifa_rt::TensorView;

namespace {

TensorView raw(const void* data, DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {}) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.strides = std::move(strides);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    const auto in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    const auto ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    const auto odd_in = check::read_bin<uint8_t>("ref_3x37x53.input.bin");
    const auto odd_ref = check::read_bin<uint8_t>("ref_3x37x53.labels.bin");
    const int64_t image = 32 * 48 * 3, plane = 32 * 48;
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 2;
    o.threads = 1;
    Segmenter s(check::path("tiny.ifa.pt"), o);
    int cases = 0;
    // After every rejected call: the same engine, the reference result (5 images: 2 + 2 + 1).
    auto still_serves = [&] {
      ++cases;
      CHECK(s.segment(check::view(in, {5, 32, 48, 3})).labels == ref);
    };
    const std::string P = "Segmenter.segment: input 'images': ";
    auto bad = [&](const TensorView& v, const std::string& message) {
      CHECK_THROWS(InvalidArgument, s.segment(v), P + message);
      still_serves();
    };

    std::vector<float> f32(image);
    std::vector<int16_t> i16(image);
    std::vector<uint8_t> b8(image);
    bad(raw(f32.data(), DType::float32, {32, 48, 3}), "expected dtype uint8, got float32");
    bad(raw(i16.data(), DType::int16, {32, 48, 3}), "expected dtype uint8, got int16");
    bad(raw(b8.data(), DType::bool_, {32, 48, 3}), "expected dtype uint8, got bool");
    bad(check::view(in, {}), "expected shape [H,W,3] or [B,H,W,3], got [] (rank 0)");
    bad(check::view(in, {plane, 3}), "expected shape [H,W,3] or [B,H,W,3], got [1536,3] (rank 2)");
    bad(check::view(in, {1, 5, 32, 48, 3}), "expected shape [H,W,3] or [B,H,W,3], got [1,5,32,48,3] (rank 5)");
    bad(check::view(in, {32, 144, 1}), "expected 3 channels (RGB, last dimension), got 1 (shape [32,144,1])");
    bad(check::view(in, {32, 36, 4}), "expected 3 channels (RGB, last dimension), got 4 (shape [32,36,4])");
    bad(check::view(in, {3, 32, 48}), "expected 3 channels (RGB, last dimension), got 48 (shape [3,32,48])");
    bad(check::view(in, {5, 3, 32, 48}), "expected 3 channels (RGB, last dimension), got 48 (shape [5,3,32,48])");
    bad(check::view(in, {0, 32, 48, 3}), "expected a non-empty image batch, got shape [0,32,48,3]");
    bad(check::view(in, {0, 48, 3}), "expected a non-empty image batch, got shape [0,48,3]");
    bad(check::view(in, {32, 0, 3}), "expected a non-empty image batch, got shape [32,0,3]");
    bad(check::view(in, {-1, 48, 3}), "expected a non-empty image batch, got shape [-1,48,3]");
    bad(check::view(in, {8, 48, 3}), "expected height and width >= 16 (the artifact's min_size), got 8x48");
    // Huge sizes: zero strides, so no memory stands behind them; rejected before any read.
    bad(raw(in.data(), DType::uint8, {16385, 48, 3}, {0, 3, 1}), "expected height and width <= 16384, got 16385x48");
    bad(raw(in.data(), DType::uint8, {2, 100000, 100000, 3}, {0, 0, 0, 1}),
        "expected height and width <= 16384, got 100000x100000");
    bad(raw(nullptr, DType::uint8, {32, 48, 3}), "expected data, got a null pointer");
    bad(raw(in.data(), DType::uint8, {32, 48, 3}, {144, 3}), "expected one stride per dimension (3), got 2");
    bad(raw(in.data() + 31 * 144, DType::uint8, {32, 48, 3}, {-144, 3, 1}),
        "expected non-negative strides, got [-144,3,1]");

    // Caller buffers.
    std::vector<uint8_t> labels(plane);
    CHECK_THROWS(InvalidArgument, s.segment(check::view(in, {32, 48, 3}), labels.data(), 10),
                 "Segmenter.segment: output 'labels': expected 1536 uint8 elements, got 10");
    CHECK_THROWS(InvalidArgument, s.segment(check::view(in, {2, 32, 48, 3}), labels.data(), plane),
                 "Segmenter.segment: output 'labels': expected 3072 uint8 elements, got 1536");
    CHECK_THROWS(InvalidArgument, s.segment(check::view(in, {32, 48, 3}), nullptr, plane),
                 "Segmenter.segment: output 'labels': expected 1536 uint8 elements, got a null pointer");
    std::vector<float> logits(3);
    CHECK_THROWS(InvalidArgument, s.logits(check::view(in, {32, 48, 3}), logits.data(), 3),
                 "Segmenter.logits: output 'logits': expected 7680 float32 elements, got 3");
    CHECK_THROWS(InvalidArgument, s.logits(raw(f32.data(), DType::float32, {32, 48, 3})),
                 "Segmenter.logits: input 'images': expected dtype uint8, got float32");
    still_serves();

    // Lists: the bad element is named by its index; nothing runs when any element is bad.
    const TensorView one = check::view(in, {32, 48, 3});
    std::vector<uint8_t> l0(plane), l1(plane);
    const int64_t calls = s.stats().calls;
    CHECK_THROWS(InvalidArgument, s.segment({one, one}, {l0.data()}),
                 "Segmenter.segment: output 'labels': expected 2 buffers (one per image), got 1");
    CHECK_THROWS(InvalidArgument, s.segment({one, raw(i16.data(), DType::int16, {32, 48, 3})}, {l0.data(), l1.data()}),
                 "Segmenter.segment: input 'images[1]': expected dtype uint8, got int16");
    CHECK_THROWS(InvalidArgument, s.segment({one, check::view(in, {1, 32, 48, 3})}, {l0.data(), l1.data()}),
                 "Segmenter.segment: input 'images[1]': expected shape [H,W,3], got [1,32,48,3] (rank 4)");
    CHECK_THROWS(InvalidArgument, s.segment({one, one}, {l0.data(), nullptr}),
                 "Segmenter.segment: output 'labels[1]': expected a buffer, got a null pointer");
    CHECK_EQ(s.stats().calls, calls);
    still_serves();

    // Accepted views give the reference labels.
    {
      // Every other column of a 2x-wide copy: strides {288, 6, 1}.
      std::vector<uint8_t> wide(2 * in.size());
      for (size_t p = 0; p < in.size() / 3; ++p)
        for (int c = 0; c < 3; ++c) wide[6 * p + c] = in[3 * p + c];
      auto r = s.segment(raw(wide.data(), DType::uint8, {5, 32, 48, 3}, {2 * image, 288, 6, 1}));
      CHECK(r.labels == ref);
      // Channels-first memory [5,3,32,48] seen as NHWC.
      std::vector<uint8_t> planar(in.size());
      for (int64_t b = 0; b < 5; ++b)
        for (int64_t p = 0; p < plane; ++p)
          for (int64_t c = 0; c < 3; ++c) planar[b * image + c * plane + p] = in[b * image + p * 3 + c];
      CHECK(s.segment(raw(planar.data(), DType::uint8, {5, 32, 48, 3}, {image, 48, 1, plane})).labels == ref);
      // A zero-stride batch: image 1, three times.
      auto bc = s.segment(raw(in.data() + image, DType::uint8, {3, 32, 48, 3}, {0, 144, 3, 1}));
      for (int k = 0; k < 3; ++k)
        CHECK(std::equal(ref.begin() + plane, ref.begin() + 2 * plane, bc.labels.begin() + k * plane));
      // Mixed sizes in one list keep their order.
      std::vector<uint8_t> a(plane), b(37 * 53), c(plane);
      s.segment({check::view(in, {32, 48, 3}), check::view(odd_in, {37, 53, 3}),
                 TensorView{in.data() + 4 * image, DType::uint8, {32, 48, 3}, {}}},
                {a.data(), b.data(), c.data()});
      CHECK(std::equal(a.begin(), a.end(), ref.begin()));
      CHECK(std::equal(b.begin(), b.end(), odd_ref.begin()));
      CHECK(std::equal(c.begin(), c.end(), ref.begin() + 4 * plane));
    }

    // Strict mode: unplanned shapes are rejected, planned ones served.
    Options so = o;
    so.strict = true;
    Segmenter strict(check::path("tiny.ifa.pt"), so);
    CHECK_THROWS(InvalidArgument, strict.segment(check::view(odd_in, {3, 37, 53, 3})),
                 P + "expected a planned shape (32x48) in strict mode, got 37x53");
    std::vector<uint8_t> s0(plane), s1(37 * 53);
    CHECK_THROWS(InvalidArgument, strict.segment({one, check::view(odd_in, {37, 53, 3})}, {s0.data(), s1.data()}),
                 "Segmenter.segment: input 'images[1]': expected a planned shape (32x48) in strict mode, got 37x53");
    CHECK(strict.segment(check::view(in, {5, 32, 48, 3})).labels == ref);
    CHECK_EQ(strict.stats().fallback_calls, int64_t{0});

    // Options rejected at construction; nothing half-built stays behind.
    const std::string tiny = check::path("tiny.ifa.pt");
    Options bad_o = o;
    bad_o.threads = -1;
    CHECK_THROWS(InvalidArgument, Segmenter(tiny, bad_o),
                 "Options: 'threads': expected an integer in [0, 1024] (0 = torch's default), got -1");
    bad_o = o;
    bad_o.max_batch = 0;
    CHECK_THROWS(InvalidArgument, Segmenter(tiny, bad_o),
                 "Options: 'max_batch': expected an integer in [1, 1024], got 0");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"precision", "int4"}}),
                 "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got 'int4'");
    bad_o = o;
    bad_o.precision = ifa_rt::Precision::int8;
    CHECK_THROWS(InvalidArgument, Segmenter(tiny, bad_o),
                 "Options: 'precision': 'int8' runs from a quantized AOTInductor package (.pt2; ifa-rt "
                 "quantize), got the TorchScript artifact '" +
                     tiny + "'");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"threads", "-2"}}),
                 "Options: 'threads': expected an integer in [0, 1024] (0 = torch's default), got -2");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"device", "cuda:-1"}}),
                 "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:-1'");
    bad_o = o;
    bad_o.shapes = {{16384, 16384}};
    bad_o.max_batch = 1024;
    bad_o.batch_invariant = false;  // batched buckets: max_batch x shapes are planned
    CHECK_THROWS_CONTAINS(
        InvalidArgument, Segmenter(tiny, bad_o),
        "Options: 'shapes': expected planned input buffers (max_batch x shapes) that fit in memory (");
    // Device-memory calls need the CUDA engine; a CPU engine refuses them before any read,
    // with the input checks first (the same as a host call's).
    std::vector<uint8_t> device_labels(5 * plane);
    const int64_t logits_size = 5 * s.metadata().num_classes * plane;
    std::vector<float> device_logits(static_cast<size_t>(logits_size));
    CHECK_THROWS(InvalidArgument,
                 s.segment_on_device(check::view(in, {5, 32, 48, 3}), device_labels.data(), 5 * plane, nullptr),
                 "Segmenter.segment_on_device: option 'device': expected a CUDA device (device-memory calls run on "
                 "the CUDA engine), got 'cpu'");
    still_serves();
    CHECK_THROWS(InvalidArgument,
                 s.logits_on_device(check::view(in, {5, 32, 48, 3}), device_logits.data(), logits_size, nullptr),
                 "Segmenter.logits_on_device: option 'device': expected a CUDA device (device-memory calls run on "
                 "the CUDA engine), got 'cpu'");
    still_serves();
    CHECK_THROWS(InvalidArgument,
                 s.segment_on_device(check::view(in, {5, 32, 48, 4}), device_labels.data(), 5 * plane, nullptr),
                 "Segmenter.segment_on_device: input 'images': expected 3 channels (RGB, last dimension), got 4 "
                 "(shape [5,32,48,4])");
    still_serves();
    if (!ifa_rt::has_cuda_engine()) {
      for (const char* device : {"cuda", "cuda:7"}) {
        bad_o = o;
        bad_o.device = device;
        CHECK_THROWS(Error, Segmenter(tiny, bad_o),
                     std::string("Segmenter: option 'device': expected an available CUDA device, got '") + device +
                         "': no CUDA device (this ifa_rt was built without the CUDA engine; torch has no CUDA)");
      }
    }
    Options zero = o;
    zero.threads = 0;  // documented: torch's default
    CHECK(Segmenter(tiny, zero).segment(check::view(in, {5, 32, 48, 3})).labels == ref);
    still_serves();
    std::cout << cases << " rejected calls, each followed by a reference check\n";
  });
}
