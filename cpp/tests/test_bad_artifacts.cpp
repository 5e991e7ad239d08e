// Bad artifacts through the C++ API: every kind fails with ifa_rt::Error naming the file and
// what was expected, in one line, and leaves nothing half-built (a good artifact loads right
// after). Graphs that break the output contract are caught at warm-up or at the call, never
// by writing past the caller's buffer. The broken files come from
// tests/fixtures/make_bad_artifacts.py (FIXTURE_DIR/bad).
#include "artifact.h"
#include "check.h"
#include "ifa_rt/version.h"

using ifa_rt::Error;
using ifa_rt::Options;
using ifa_rt::Segmenter;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    const auto in = check::read_bin<uint8_t>("ref_5x32x48.input.bin");
    const auto ref = check::read_bin<uint8_t>("ref_5x32x48.labels.bin");
    Options o;
    o.shapes = {{32, 48}};
    o.max_batch = 2;
    o.batch_invariant = false;  // the messages name the batch-2 bucket
    o.threads = 1;
    int cases = 0;
    auto good_still_loads = [&] {
      ++cases;
      Segmenter s(check::path("tiny.ifa.pt"), o);
      CHECK(s.segment(check::view(in, {5, 32, 48, 3})).labels == ref);
    };
    auto fails = [&](const std::string& name, const std::string& message, bool exact = true) {
      const std::string path = check::path(name);
      const std::string want = "failed to load artifact '" + path + "': " + message;
      try {
        Segmenter s(path, o);
        check::fail(__FILE__, __LINE__, "no exception for " + name);
      } catch (const Error& e) {
        const std::string got = e.what();
        if (exact ? got != want : got.rfind(want, 0) != 0)
          check::fail(__FILE__, __LINE__, "message:\n  got:  " + got + "\n  want: " + want);
        if (got.find('\n') != std::string::npos) check::fail(__FILE__, __LINE__, "multi-line: " + got);
      } catch (const std::exception& e) {
        check::fail(__FILE__, __LINE__, name + ": wrong exception type: " + e.what());
      }
      good_still_loads();
    };
    const std::string archive = "not a readable TorchScript archive: zip: ";
    const std::string corrupt = " (a truncated or corrupt file)";
    const std::string meta = "metadata 'ifa_rt.json': ";
    const std::string version = meta + "'format_version': expected 1 (the versions this runtime reads), got ";
    fails("bad/nope.ifa.pt", "no such file or not readable");
    fails("bad", "not a readable TorchScript archive: ", false);  // a directory
    fails("bad/empty.ifa.pt", archive + "expected an end-of-central-directory record, got a 0-byte file" + corrupt);
    fails("truncated.ifa.pt", archive + "expected an end-of-central-directory record, got none" + corrupt);
    fails("random.ifa.pt", archive + "expected an end-of-central-directory record, got none" + corrupt);
    // Checked against the file before LibTorch reads it (it trusts every length, checks no CRC).
    fails("bad/bitflip.ifa.pt", archive + "record ", false);
    fails("bad/huge_length.ifa.pt", archive + "record ", false);
    fails("bad/newer_torch.ifa.pt", "not a readable TorchScript archive: [enforce fail at inline_container.cc:", false);
    const std::string compile =
        "not a readable TorchScript archive: its TorchScript code does not compile with torch " +
        ifa_rt::torch_version() + " (a corrupt file, or code from a newer torch)";
    // Fuzz finds: the first aborted the process, the second segfaulted inside LibTorch. Which
    // error LibTorch reports for them depends on the types the process compiled before.
    fails("bad/fuzz-error-report-abort.ifa.pt", "not a readable TorchScript archive: ", false);
    fails("bad/fuzz-debug-info-segv.ifa.pt", "not a readable TorchScript archive: ", false);
    fails("bad/unknown_op.ifa.pt", compile);
    // Asked LibTorch for 30 GB (ASan aborted on it); the zip check rejects it first now.
    fails("bad/fuzz-huge-record.ifa.pt",
          archive + "record 0 ('bad_version.ifa/extra/ifa_rt.json') fails its CRC-32 check" + corrupt);
    fails("bad/plain.ifa.pt", meta + "expected a JSON extra file (an ifa_rt artifact), got none");
    fails("bad/version2.ifa.pt", version + "2 (written by ifa_rt 9.0.0; this runtime is 0.1.0: upgrade it)");
    fails("bad/version_string.ifa.pt", version + "'1'");
    fails("bad/version_huge.ifa.pt", version + "4294967297");
    fails("bad/classes_string.ifa.pt", meta + "'num_classes': expected a positive integer, got '5'");
    fails("bad/two_inputs.ifa.pt", "method 'forward': expected 1 input (images uint8 [B,H,W,3]), got 2");
    fails("bad/tuple_forward.ifa.pt",
          "method 'forward': expected a Tensor result (docs/artifact.md), got Tuple[Tensor, Tensor]");

    // The fuzzing regression (fuzz/regressions): a huge format_version was cast to int (UB).
    using ifa_rt::detail::parse_metadata;
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": 4294967297})"), version + "4294967297");
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": -1e300})"), version + "-1e+300");
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": 1.5})"), version + "1.5");
    // Deep nesting must not exhaust the stack (parsing, rendering the value, destroying it).
    const std::string deep(200000, '[');
    CHECK_THROWS(Error, parse_metadata(deep + std::string(200000, ']')),
                 "metadata 'ifa_rt.json': expected a JSON object, got a list");
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": )" + deep + std::string(200000, ']') + "}"),
                 version + std::string(57, '[') + "...");

    // Output-contract breaks caught at warm-up.
    const std::string warm = "Segmenter: warm-up of bucket 1x32x48 failed: ";
    auto warmup_fails = [&](const std::string& name, Options opts, const std::string& message) {
      CHECK_THROWS(Error, Segmenter(check::path("bad/" + name), opts), message);
      good_still_loads();
    };
    warmup_fails("float_labels.ifa.pt", o, warm + "forward: expected uint8 [1,32,48], got float32 [1,32,48]");
    warmup_fails("rank4_labels.ifa.pt", o, warm + "forward: expected uint8 [1,32,48], got uint8 [1,32,48,1]");
    Options pl = o;
    pl.plan_logits = true;
    warmup_fails("wrong_classes.ifa.pt", pl, warm + "logits: expected float32 [1,11,32,48], got float32 [1,5,32,48]");
    Options tall = o;
    tall.shapes = {{48, 32}};
    warmup_fails("raises.ifa.pt", tall,
                 "Segmenter: warm-up of bucket 1x48x32 failed: Segmenter: forward failed on input [1,48,32,3]: "
                 "builtins.RuntimeError: boom");

    // ...or at the call; the engine keeps serving what it can.
    {
      Segmenter s(check::path("bad/raises.ifa.pt"), o);
      std::vector<uint8_t> tall_in(41 * 48 * 3, 7);
      CHECK_THROWS(Error, s.segment(check::view(tall_in, {41, 48, 3})),
                   "Segmenter: forward failed on input [1,41,48,3]: builtins.RuntimeError: boom");
      auto r = s.segment(check::view(in, {32, 48, 3}));  // this graph returns channel 0
      for (size_t p = 0; p < r.labels.size(); ++p) CHECK_EQ(int{r.labels[p]}, int{in[3 * p]});
    }
    // A data-dependent output shape on the planned path: before the per-run check, the
    // 4x-taller result was copied into the 32x48 label buffer (heap overflow).
    for (const char* runtime : {"static", "jit"}) {
      Options d = o;
      d.runtime = runtime;
      Segmenter s(check::path("bad/data_shape.ifa.pt"), d);
      std::vector<uint8_t> white(2 * 32 * 48 * 3, 255), labels(2 * 32 * 48, 0);
      for (int k = 0; k < 3; ++k) {
        CHECK_THROWS(Error, s.segment(check::view(white, {2, 32, 48, 3}), labels.data(), 2 * 32 * 48),
                     "forward: expected uint8 [2,32,48], got uint8 [2,128,48]");
        ++cases;
      }
      auto r = s.segment(check::view(in, {32, 48, 3}));
      for (size_t p = 0; p < r.labels.size(); ++p) CHECK_EQ(int{r.labels[p]}, int{in[3 * p]});
    }
    std::cout << cases << " bad artifacts or calls, each followed by a clean reload or call\n";
  });
}
