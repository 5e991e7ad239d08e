// libFuzzer target: the artifact metadata reader (nlohmann/json + cpp/src/metadata.cpp), no torch.
//
// Every input must either parse into metadata that satisfies the documented invariants
// (docs/artifact.md) or raise ifa_rt::Error; any other exception, a crash, a hang or a
// sanitizer report is a finding. The JSON parser alone is also driven, since metadata
// validation rejects most JSON before it reaches the deeper parser paths.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "artifact.h"
#include "json_read.h"

namespace {

namespace json = ifa_rt::detail::json;

// Walks a parsed value and renders it as the error messages do (brief() recurses too).
size_t walk(const json::Json& v, int depth) {
  size_t n = json::brief(v).size() + (json::is_integer(v) ? 1 : 0);
  if (v.is_array())
    for (const auto& x : v) n += walk(x, depth + 1);
  if (v.is_object())
    for (const auto& [key, x] : v.items()) n += key.size() + walk(x, depth + 1);
  return n;
}

[[noreturn]] void finding(const char* what) {
  __builtin_printf("fuzz_metadata: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const json::Json v = json::parse(text);
    (void)walk(v, 0);
  } catch (const std::runtime_error&) {
    // Malformed JSON: the parser reports it with an offset.
  }
  try {
    const ifa_rt::Metadata m = ifa_rt::detail::parse_metadata(text);
    if (m.format_version != ifa_rt::detail::kFormatVersion) finding("format_version");
    if (m.num_classes < 1 || m.num_classes > 256) finding("num_classes range");
    if (static_cast<int64_t>(m.classes.size()) != m.num_classes) finding("classes size");
    if (static_cast<int64_t>(m.palette.size()) != m.num_classes) finding("palette size");
    if (m.min_size < 1) finding("min_size");
    if (!m.mean.empty() && m.mean.size() != 3) finding("mean size");
    if (!m.std.empty() && m.std.size() != 3) finding("std size");
    if (m.json != text) finding("raw json kept");
  } catch (const ifa_rt::Error&) {
    // A clear rejection is the expected outcome for almost every input.
  }
  return 0;
}
