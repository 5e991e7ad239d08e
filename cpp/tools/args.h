#pragma once
// Command-line parsing shared by the tools: `--key value` pairs (dashes become underscores)
// and positional arguments. Keys that are Options fields go to Options::from_map.
// `--help`/`-h` anywhere asks for the usage (stdout, exit 0), as with the Python CLI.
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "ifa_rt/segmenter.h"
#include "model_lookup.h"

namespace tools {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // Options keys
  std::map<std::string, std::string> own;      // the tool's keys
};

/// True when the command line asks for the usage (`--help` or `-h`).
inline bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) return true;
  return false;
}

inline Args parse_args(int argc, char** argv, const std::set<std::string>& own_keys,
                       const std::set<std::string>& flags = {}) {
  static const std::set<std::string> option_keys = {"device",  "precision", "max_batch",   "shapes",
                                                    "threads", "strict",    "plan_logits", "channels_last",
                                                    "runtime", "optimize",  "warmup"};
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      a.positional.push_back(arg);
      continue;
    }
    std::string key = arg.substr(2);
    for (char& c : key)
      if (c == '-') c = '_';
    std::string value = "true";
    if (flags.count(key) == 0) {
      if (i + 1 >= argc) throw ifa_rt::InvalidArgument("missing value for --" + arg.substr(2));
      value = argv[++i];
    }
    if (own_keys.count(key) || flags.count(key))
      a.own[key] = value;
    else if (option_keys.count(key))
      a.options[key] = value;
    else
      throw ifa_rt::InvalidArgument("unknown argument '" + arg + "'");
  }
  return a;
}

/// The artifact: `--model NAME_OR_PATH`, else the first positional argument (taken out of
/// `positional`), resolved by tools::resolve_model; empty when neither was given.
inline std::string take_model(Args& a, const std::string& where) {
  std::string model;
  if (a.own.count("model")) {
    model = a.own["model"];
  } else if (!a.positional.empty()) {
    model = a.positional.front();
    a.positional.erase(a.positional.begin());
  }
  return model.empty() ? model : resolve_model(model, where);
}

}  // namespace tools
