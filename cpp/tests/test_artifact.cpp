// Artifact loading: metadata, and an error with context for each kind of bad artifact.
#include "artifact.h"
#include "check.h"

using ifa_rt::Error;
using ifa_rt::Options;
using ifa_rt::Segmenter;

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    Segmenter s(check::path("tiny.ifa.pt"));
    const ifa_rt::Metadata& m = s.metadata();
    CHECK_EQ(m.format_version, 1);
    CHECK_EQ(m.num_classes, int64_t{5});
    CHECK_EQ(m.classes.size(), size_t{5});
    CHECK(m.classes[0] == "class0");
    CHECK_EQ(m.palette.size(), size_t{5});
    CHECK_EQ(int{m.palette[1][0]}, 37);
    CHECK_EQ(m.min_size, int64_t{16});
    CHECK_EQ(m.ignore_index, int64_t{255});
    CHECK(m.preset == "tiny-fixture");
    CHECK_EQ(m.mean.size(), size_t{3});
    CHECK(m.json.find("\"format_version\"") != std::string::npos);

    auto p = [](const std::string& name) { return check::path(name); };
    auto load = [](const std::string& path) { Segmenter bad(path); };
    const std::string missing = p("nope.ifa.pt");
    CHECK_THROWS(Error, load(missing), "failed to load artifact '" + missing + "': no such file or not readable");
    CHECK_THROWS(Error, load(p("no_metadata.ifa.pt")),
                 "failed to load artifact '" + p("no_metadata.ifa.pt") +
                     "': metadata 'ifa_rt.json': expected a JSON extra file (an ifa_rt artifact), got none");
    CHECK_THROWS(Error, load(p("bad_json.ifa.pt")),
                 "failed to load artifact '" + p("bad_json.ifa.pt") +
                     "': metadata 'ifa_rt.json': expected JSON, got a parse error at byte 3: syntax error while "
                     "parsing object key - invalid literal; last read: '{no'; expected string literal");
    CHECK_THROWS(
        Error, load(p("bad_version.ifa.pt")),
        "failed to load artifact '" + p("bad_version.ifa.pt") +
            "': metadata 'ifa_rt.json': 'format_version': expected 1 (the versions this runtime reads), got 99");
    CHECK_THROWS(Error, load(p("missing_key.ifa.pt")),
                 "failed to load artifact '" + p("missing_key.ifa.pt") +
                     "': metadata 'ifa_rt.json': 'palette': expected a value (required key), got nothing");
    CHECK_THROWS(Error, load(p("no_logits.ifa.pt")),
                 "failed to load artifact '" + p("no_logits.ifa.pt") +
                     "': method 'logits': expected a scripted method (docs/artifact.md), got none");
    CHECK_THROWS_CONTAINS(
        Error, load(p("truncated.ifa.pt")),
        "failed to load artifact '" + p("truncated.ifa.pt") + "': not a readable TorchScript archive: ");
    CHECK_THROWS_CONTAINS(Error, load(p("random.ifa.pt")),
                          "failed to load artifact '" + p("random.ifa.pt") + "': not a readable TorchScript archive: ");

    // Metadata validation without torch.
    using ifa_rt::detail::parse_metadata;
    CHECK_THROWS(Error, parse_metadata("[1]"), "metadata 'ifa_rt.json': expected a JSON object, got a list");
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": 1, "num_classes": 0})"),
                 "metadata 'ifa_rt.json': 'num_classes': expected an integer in [1, 256] (labels are uint8), got 0");
    CHECK_THROWS(Error, parse_metadata(R"({"format_version": 1, "num_classes": 2, "classes": ["a"]})"),
                 "metadata 'ifa_rt.json': 'classes': expected a list of 2 names, got ['a']");
    CHECK_THROWS(
        Error, parse_metadata(R"({"format_version": 1, "num_classes": 1, "classes": ["a"], "palette": [[1,2,300]],
                                   "input": {}})"),
        "metadata 'ifa_rt.json': 'palette': expected [r, g, b] colours with values in 0..255, got [1, 2, 300]");
    CHECK_THROWS(Error,
                 parse_metadata(R"({"format_version": 1, "num_classes": 1, "classes": ["a"], "palette": [[1,2,3]],
                                   "input": {"layout": "NCHW"}})"),
                 "metadata 'ifa_rt.json': 'input.layout': expected 'NHWC', got 'NCHW'");
    auto ok = parse_metadata(R"({"format_version": 1, "num_classes": 1, "classes": ["a\u00e9"],
                                 "palette": [[1,2,3]], "input": {}})");
    CHECK(ok.classes[0] == "a\xc3\xa9");
    CHECK_EQ(ok.min_size, int64_t{1});

    // The plan is checked against the artifact at construction.
    Options o;
    o.shapes = {{8, 48}};
    CHECK_THROWS(ifa_rt::InvalidArgument, Segmenter(check::path("tiny.ifa.pt"), o),
                 "Options: 'shapes': expected height and width >= 16 (the artifact's min_size), got 8x48");
  });
}
