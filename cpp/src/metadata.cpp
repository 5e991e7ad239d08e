// Validation of the artifact metadata `ifa_rt.json` (docs/artifact.md). No torch here.
#include <string>

#include "artifact.h"
#include "ifa_rt/version.h"
#include "json_read.h"

namespace ifa_rt::detail {
namespace {

using json::brief;
using json::find;
using json::is_integer;
using json::Json;
using json::number;

[[noreturn]] void bad(const std::string& key, const std::string& what, const std::string& got) {
  throw Error(std::string("metadata '") + kMetadataFile + "': '" + key + "': expected " + what + ", got " + got);
}

const Json& required(const Json& root, const std::string& key) {
  const Json* v = find(root, key);
  if (v == nullptr) bad(key, "a value (required key)", "nothing");
  return *v;
}

int64_t integer(const Json& v, const std::string& key, const std::string& what) {
  // Compared as a double: casting a huge number to int first is undefined (found by fuzzing).
  if (!is_integer(v) || std::fabs(number(v)) > 9.0e15) bad(key, what, brief(v));
  return static_cast<int64_t>(number(v));
}

std::string optional_string(const Json& root, const std::string& key) {
  const Json* v = find(root, key);
  if (v == nullptr || v->is_null()) return {};
  if (!v->is_string()) bad(key, "a string", brief(*v));
  return v->get<std::string>();
}

std::vector<double> optional_triple(const Json& root, const std::string& key) {
  const Json* v = find(root, key);
  if (v == nullptr) return {};
  if (!v->is_array() || v->size() != 3) bad(key, "a list of 3 numbers", brief(*v));
  std::vector<double> out;
  for (const Json& x : *v) {
    if (!x.is_number()) bad(key, "a list of 3 numbers", brief(*v));
    out.push_back(number(x));
  }
  return out;
}

}  // namespace

Metadata parse_metadata(const std::string& text) {
  Json root;
  try {
    root = json::parse(text);
  } catch (const std::runtime_error& e) {
    throw Error(std::string("metadata '") + kMetadataFile + "': expected JSON, got a parse error " + e.what());
  }
  if (!root.is_object())
    throw Error(std::string("metadata '") + kMetadataFile + "': expected a JSON object, got " +
                (root.is_array()     ? "a list"
                 : root.is_string()  ? "a string"
                 : root.is_null()    ? "null"
                 : root.is_boolean() ? "a boolean"
                                     : "a number"));
  Metadata m;
  m.json = text;
  const Json& version = required(root, "format_version");
  // Compared as a double: casting a huge number to int first is undefined (found by fuzzing).
  if (!is_integer(version) || number(version) != static_cast<double>(kFormatVersion)) {
    // A newer exporter is the likely cause: say which, so the fix (upgrade) is obvious.
    std::string got = brief(version);
    const Json* by = find(root, "ifa_rt_version");
    if (is_integer(version) && number(version) > kFormatVersion && by != nullptr && by->is_string() &&
        by->get<std::string>() != ifa_rt::version())
      got +=
          " (written by ifa_rt " + by->get<std::string>() + "; this runtime is " + ifa_rt::version() + ": upgrade it)";
    bad("format_version", std::to_string(kFormatVersion) + " (the versions this runtime reads)", got);
  }
  m.format_version = kFormatVersion;

  m.num_classes = integer(required(root, "num_classes"), "num_classes", "a positive integer");
  if (m.num_classes < 1 || m.num_classes > 256)
    bad("num_classes", "an integer in [1, 256] (labels are uint8)", std::to_string(m.num_classes));

  const Json& classes = required(root, "classes");
  const std::string n = std::to_string(m.num_classes);
  if (!classes.is_array() || static_cast<int64_t>(classes.size()) != m.num_classes)
    bad("classes", "a list of " + n + " names", brief(classes));
  for (const Json& c : classes) {
    if (!c.is_string()) bad("classes", "a list of " + n + " names", brief(classes));
    m.classes.push_back(c.get<std::string>());
  }

  const Json& palette = required(root, "palette");
  if (!palette.is_array() || static_cast<int64_t>(palette.size()) != m.num_classes)
    bad("palette", "a list of " + n + " [r, g, b] colours", brief(palette));
  for (const Json& c : palette) {
    bool ok = c.is_array() && c.size() == 3;
    std::array<uint8_t, 3> rgb{};
    for (size_t k = 0; ok && k < 3; ++k) {
      ok = is_integer(c[k]) && number(c[k]) >= 0 && number(c[k]) <= 255;
      if (ok) rgb[k] = static_cast<uint8_t>(number(c[k]));
    }
    if (!ok) bad("palette", "[r, g, b] colours with values in 0..255", brief(c));
    m.palette.push_back(rgb);
  }

  const Json& input = required(root, "input");
  if (!input.is_object()) bad("input", "an object", brief(input));
  const std::pair<const char*, const char*> fixed[] = {{"layout", "NHWC"}, {"dtype", "uint8"}, {"color", "RGB"}};
  for (const auto& [key, want] : fixed) {
    const Json* v = find(input, key);
    if (v != nullptr && (!v->is_string() || v->get<std::string>() != want))
      bad(std::string("input.") + key, std::string("'") + want + "'", brief(*v));
  }
  if (const Json* ch = find(input, "channels"); ch != nullptr && (!is_integer(*ch) || number(*ch) != 3))
    bad("input.channels", "3", brief(*ch));
  if (const Json* ms = find(input, "min_size"); ms != nullptr) {
    m.min_size = integer(*ms, "input.min_size", "a positive integer");
    if (m.min_size < 1) bad("input.min_size", "a positive integer", brief(*ms));
  }

  m.ifa_rt_version = optional_string(root, "ifa_rt_version");
  m.torch_version = optional_string(root, "torch_version");
  m.preset = optional_string(root, "preset");
  m.form = optional_string(root, "form");
  m.mean = optional_triple(root, "mean");
  m.std = optional_triple(root, "std");
  if (const Json* ig = find(root, "ignore_index"); ig != nullptr && !ig->is_null())
    m.ignore_index = integer(*ig, "ignore_index", "an integer");
  return m;
}

void check_plan(const Options& options, const Metadata& metadata) {
  for (const Shape& s : options.shapes)
    if (s.height < metadata.min_size || s.width < metadata.min_size)
      throw InvalidArgument("Options: 'shapes': expected height and width >= " + std::to_string(metadata.min_size) +
                            " (the artifact's min_size), got " + std::to_string(s.height) + "x" +
                            std::to_string(s.width));
}

}  // namespace ifa_rt::detail
