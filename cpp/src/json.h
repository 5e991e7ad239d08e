#pragma once
// A minimal JSON reader for the artifact metadata (no dependency, no torch).
#include <string>
#include <utility>
#include <vector>

namespace ifa_rt::detail {

/// A parsed JSON value. Objects keep their keys in file order.
struct Json {
  enum class Type { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  /// The member `key` of an object, or nullptr.
  const Json* find(const std::string& key) const;
  /// "null", "a boolean", "a number", "a string", "a list", "an object".
  std::string type_name() const;
  /// A short rendering for error messages (long values are cut with "...").
  std::string brief() const;
  /// True for a number with no fractional part.
  bool is_integer() const;
};

/// Parses `text`; throws std::runtime_error("... at offset N") on malformed input.
Json parse_json(const std::string& text);

}  // namespace ifa_rt::detail
