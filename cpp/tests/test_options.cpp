// Options: defaults, validation by name, from_map.
#include "check.h"

using ifa_rt::InvalidArgument;
using ifa_rt::Options;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    Options d;
    CHECK(d.device == "cpu");
    CHECK(d.precision == ifa_rt::Precision::fp32);
    CHECK_EQ(d.max_batch, int64_t{1});
    CHECK(d.shapes.empty());
    CHECK(!d.strict);
    d.validate();

    Options o;
    o.max_batch = 0;
    CHECK_THROWS(InvalidArgument, o.validate(), "Options: 'max_batch': expected an integer in [1, 1024], got 0");
    o = Options();
    o.device = "tpu";
    CHECK_THROWS(InvalidArgument, o.validate(), "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'");
    o.device = "cuda:x";
    CHECK_THROWS(InvalidArgument, o.validate(), "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:x'");
    o = Options();
    o.shapes = {{32, 0}};
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'shapes': expected (height, width) pairs in [1, 16384], got 32x0");
    o.shapes = {{32, 48}, {32, 48}};
    CHECK_THROWS(InvalidArgument, o.validate(), "Options: 'shapes': expected distinct shapes, got a duplicate");
    o = Options();
    o.runtime = "fast";
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'runtime': expected 'auto', 'static', 'jit' or 'aoti', got 'fast'");
    o = Options();
    o.warmup = 1;
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'warmup': expected an integer in [2, 100] (the profiling executor needs 2 calls), got 1");
    o = Options();
    o.shape_cache = -1;
    CHECK_THROWS(InvalidArgument, o.validate(), "Options: 'shape_cache': expected an integer in [0, 1024], got -1");
    CHECK_EQ(Options::from_map({{"shape_cache", "7"}}).shape_cache, 7);
    o.shape_cache = 4;
    o.learn_shapes = 65;
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'learn_shapes': expected an integer in [0, 64] (0 = never plan unplanned sizes), got 65");
    CHECK_EQ(Options::from_map({{"learn_shapes", "0"}}).learn_shapes, 0);
    CHECK(!Options().tf32);  // fp32 means fp32 unless asked
    CHECK(Options::from_map({{"tf32", "true"}}).tf32);
    o = Options();
    o.runtime = "static";
    o.optimize = true;
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'optimize': expected false with runtime 'static' (Static Runtime cannot run the "
                 "MKLDNN graph optimize_for_inference makes; use runtime 'jit'), got true");
    CHECK(Options().fuser == "auto");
    CHECK(Options::from_map({{"fuser", "off"}}).fuser == "off");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"fuser", "nvfuser"}}),
                 "Options: 'fuser': expected 'auto', 'on' or 'off', got 'nvfuser'");
    // int8 is a quantized CPU package: on CUDA it is refused, not silently run in fp32.
    o = Options();
    o.precision = ifa_rt::Precision::int8;
    o.validate();
    o.device = "cuda:0";
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'precision': expected 'fp32', 'fp16' or 'bf16' on device 'cuda:0' (int8 runs on the CPU "
                 "only, from a quantized AOTInductor package), got 'int8'");
    o = Options();
    o.threads = -1;
    CHECK_THROWS(InvalidArgument, o.validate(),
                 "Options: 'threads': expected an integer in [0, 1024] (0 = torch's default), got -1");

    Options m = Options::from_map({{"device", "cuda:1"},
                                   {"precision", "bf16"},
                                   {"max_batch", "4"},
                                   {"shapes", "360x480,512x1024"},
                                   {"strict", "true"}});
    CHECK(m.device == "cuda:1");
    CHECK(m.precision == ifa_rt::Precision::bf16);
    CHECK_EQ(m.max_batch, int64_t{4});
    CHECK_EQ(m.shapes.size(), size_t{2});
    CHECK_EQ(m.shapes[1].width, int64_t{1024});
    CHECK(m.strict);
    CHECK_THROWS(InvalidArgument, Options::from_map({{"batch", "2"}}),
                 "Options: unknown option 'batch' (known: device, precision, max_batch, shapes, threads, "
                 "strict, plan_logits, channels_last, runtime, optimize, warmup, shape_cache, tf32, batch_invariant, "
                 "learn_shapes, trim_heap_mb, mmap_threshold_kb, fuser)");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"mmap_threshold_kb", "40000"}}),
                 "Options: 'mmap_threshold_kb': expected an integer in [0, 32768] (0 = leave the allocator as it "
                 "is), got 40000");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"precision", "fp64"}}),
                 "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got 'fp64'");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"max_batch", "two"}}),
                 "Options: 'max_batch': expected an integer, got 'two'");
    CHECK_THROWS(InvalidArgument, Options::from_map({{"strict", "maybe"}}),
                 "Options: 'strict': expected a boolean (true/false), got 'maybe'");
  });
}
