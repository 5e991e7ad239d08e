// Validation of the artifact metadata `ifa_rt.json` (docs/artifact.md). No torch here.
#include <string>

#include "artifact.h"
#include "ifa_rt/version.h"
#include "json.h"

namespace ifa_rt::detail {
namespace {

[[noreturn]] void bad(const std::string& key, const std::string& what, const std::string& got) {
  throw Error(std::string("metadata '") + kMetadataFile + "': '" + key + "': expected " + what +
              ", got " + got);
}

const Json& required(const Json& root, const std::string& key) {
  const Json* v = root.find(key);
  if (v == nullptr) bad(key, "a value (required key)", "nothing");
  return *v;
}

int64_t integer(const Json& v, const std::string& key, const std::string& what) {
  if (!v.is_integer()) bad(key, what, v.brief());
  return static_cast<int64_t>(v.number);
}

std::string optional_string(const Json& root, const std::string& key) {
  const Json* v = root.find(key);
  if (v == nullptr || v->type == Json::Type::null) return {};
  if (v->type != Json::Type::string) bad(key, "a string", v->brief());
  return v->string;
}

std::vector<double> optional_triple(const Json& root, const std::string& key) {
  const Json* v = root.find(key);
  if (v == nullptr) return {};
  if (v->type != Json::Type::array || v->array.size() != 3) bad(key, "a list of 3 numbers", v->brief());
  std::vector<double> out;
  for (const Json& x : v->array) {
    if (x.type != Json::Type::number) bad(key, "a list of 3 numbers", v->brief());
    out.push_back(x.number);
  }
  return out;
}

}  // namespace

Metadata parse_metadata(const std::string& text) {
  Json root;
  try {
    root = parse_json(text);
  } catch (const std::runtime_error& e) {
    throw Error(std::string("metadata '") + kMetadataFile + "': expected JSON, got a parse error: " +
                e.what());
  }
  if (root.type != Json::Type::object)
    throw Error(std::string("metadata '") + kMetadataFile + "': expected a JSON object, got " +
                root.type_name());
  Metadata m;
  m.json = text;
  const Json& version = required(root, "format_version");
  // Compared as a double: casting a huge number to int first is undefined (found by fuzzing).
  if (!version.is_integer() || version.number != static_cast<double>(kFormatVersion)) {
    // A newer exporter is the likely cause: say which, so the fix (upgrade) is obvious.
    std::string got = version.brief();
    const Json* by = root.find("ifa_rt_version");
    if (version.is_integer() && version.number > kFormatVersion && by != nullptr &&
        by->type == Json::Type::string && by->string != ifa_rt::version())
      got += " (written by ifa_rt " + by->string + "; this runtime is " + ifa_rt::version() +
             ": upgrade it)";
    bad("format_version", std::to_string(kFormatVersion) + " (the versions this runtime reads)", got);
  }
  m.format_version = kFormatVersion;

  m.num_classes = integer(required(root, "num_classes"), "num_classes", "a positive integer");
  if (m.num_classes < 1 || m.num_classes > 256)
    bad("num_classes", "an integer in [1, 256] (labels are uint8)", std::to_string(m.num_classes));

  const Json& classes = required(root, "classes");
  const std::string n = std::to_string(m.num_classes);
  if (classes.type != Json::Type::array || static_cast<int64_t>(classes.array.size()) != m.num_classes)
    bad("classes", "a list of " + n + " names", classes.brief());
  for (const Json& c : classes.array) {
    if (c.type != Json::Type::string) bad("classes", "a list of " + n + " names", classes.brief());
    m.classes.push_back(c.string);
  }

  const Json& palette = required(root, "palette");
  if (palette.type != Json::Type::array || static_cast<int64_t>(palette.array.size()) != m.num_classes)
    bad("palette", "a list of " + n + " [r, g, b] colours", palette.brief());
  for (const Json& c : palette.array) {
    bool ok = c.type == Json::Type::array && c.array.size() == 3;
    std::array<uint8_t, 3> rgb{};
    for (size_t k = 0; ok && k < 3; ++k) {
      ok = c.array[k].is_integer() && c.array[k].number >= 0 && c.array[k].number <= 255;
      if (ok) rgb[k] = static_cast<uint8_t>(c.array[k].number);
    }
    if (!ok) bad("palette", "[r, g, b] colours with values in 0..255", c.brief());
    m.palette.push_back(rgb);
  }

  const Json& input = required(root, "input");
  if (input.type != Json::Type::object) bad("input", "an object", input.brief());
  const std::pair<const char*, const char*> fixed[] = {
      {"layout", "NHWC"}, {"dtype", "uint8"}, {"color", "RGB"}};
  for (const auto& [key, want] : fixed) {
    const Json* v = input.find(key);
    if (v != nullptr && (v->type != Json::Type::string || v->string != want))
      bad(std::string("input.") + key, std::string("'") + want + "'", v->brief());
  }
  if (const Json* ch = input.find("channels"); ch != nullptr && (!ch->is_integer() || ch->number != 3))
    bad("input.channels", "3", ch->brief());
  if (const Json* ms = input.find("min_size"); ms != nullptr) {
    m.min_size = integer(*ms, "input.min_size", "a positive integer");
    if (m.min_size < 1) bad("input.min_size", "a positive integer", ms->brief());
  }

  m.ifa_rt_version = optional_string(root, "ifa_rt_version");
  m.torch_version = optional_string(root, "torch_version");
  m.preset = optional_string(root, "preset");
  m.form = optional_string(root, "form");
  m.mean = optional_triple(root, "mean");
  m.std = optional_triple(root, "std");
  if (const Json* ig = root.find("ignore_index"); ig != nullptr && ig->type != Json::Type::null)
    m.ignore_index = integer(*ig, "ignore_index", "an integer");
  return m;
}

void check_plan(const Options& options, const Metadata& metadata) {
  for (const Shape& s : options.shapes)
    if (s.height < metadata.min_size || s.width < metadata.min_size)
      throw InvalidArgument("Options: 'shapes': expected height and width >= " +
                            std::to_string(metadata.min_size) + " (the artifact's min_size), got " +
                            std::to_string(s.height) + "x" + std::to_string(s.width));
}

}  // namespace ifa_rt::detail
