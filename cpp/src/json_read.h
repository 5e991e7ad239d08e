#pragma once
// Reading the artifact's JSON with nlohmann/json (header-only; Debian nlohmann-json3-dev):
// the few helpers metadata.cpp and package.cpp share to look values up and to show a bad
// one in an error message. Its parser is iterative, so deep nesting cannot exhaust the stack.
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

namespace ifa_rt::detail::json {

using Json = nlohmann::json;

/// The member `key` of an object, or nullptr.
inline const Json* find(const Json& object, const std::string& key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

namespace detail {
// Python-like rendering ('a', [1, 2]), as the messages of the Python side read; it stops
// once `out` is past `budget` characters, so a huge or deeply nested value costs little.
inline void render(const Json& v, std::string& out, size_t budget) {
  if (out.size() > budget) return;
  if (v.is_string()) {
    out += "'" + v.get<std::string>() + "'";
  } else if (v.is_array() || v.is_object()) {
    out += v.is_array() ? "[" : "{";
    bool first = true;
    for (const auto& [key, item] : v.items()) {
      if (out.size() > budget) return;
      out += first ? "" : ", ";
      if (v.is_object()) out += "'" + key + "': ";
      render(item, out, budget);
      first = false;
    }
    out += v.is_array() ? "]" : "}";
  } else {
    out += v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}
}  // namespace detail

/// A short rendering for error messages (long values are cut with "...").
inline std::string brief(const Json& v) {
  std::string text;
  detail::render(v, text, 60);
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

/// brief() of a value that may be missing ("nothing").
inline std::string brief(const Json* v) { return v == nullptr ? "nothing" : brief(*v); }

/// A number with no fractional part (5 and 5.0 alike, as Python's json writes them).
inline bool is_integer(const Json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && d == std::floor(d);
}

/// Any JSON number as a double (compare as doubles: casting a huge one to int is undefined).
inline double number(const Json& v) { return v.get<double>(); }

/// Parses `text`; a malformed document throws std::runtime_error("at byte N: <reason>").
inline Json parse(const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // nlohmann's message without its "[json.exception.parse_error.101] parse error at line
    // 1, column 2: " prefix: the byte offset is given instead.
    const std::string what = e.what();
    const auto colon = what.find(": ");
    throw std::runtime_error("at byte " + std::to_string(e.byte) + ": " +
                             (colon == std::string::npos ? what : what.substr(colon + 2)));
  }
}

}  // namespace ifa_rt::detail::json
