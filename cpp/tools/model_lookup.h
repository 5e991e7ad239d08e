#pragma once
// Bundled models by name for the C++ tools: `camvid` means <folder>/camvid.ifa.pt, found as
// the Python package finds it (python/ifa_rt/bundled/__init__.py). Lookup, first match wins:
//   1. a name that looks like a path (has a '/', ends in .pt/.pth/.pt2) is used as given;
//   2. each folder of $IFA_RT_MODELS (':'-separated), so any installation can be pointed at;
//   3. the package's own folder: tools are installed in <site-packages>/ifa_rt/bin, the
//      bundled files in <site-packages>/ifa_rt/bundled (a wheel, a plain pip install);
//   4. IFA_RT_SOURCE_BUNDLED_DIR, baked in by builds whose package data is the source tree
//      (an editable install, the build tree that ctest runs); wheels do not bake it;
//   5. an existing file of that name.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace tools {

namespace fs = std::filesystem;

inline const std::string kModelSuffix = ".ifa.pt";

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// The folders searched for bundled model names, in lookup order (steps 2-4 above).
inline std::vector<fs::path> model_folders() {
  std::vector<fs::path> folders;
  if (const char* env = std::getenv("IFA_RT_MODELS")) {
    const std::string list = env;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t end = std::min(list.find(':', start), list.size());
      if (end > start) folders.emplace_back(list.substr(start, end - start));
      start = end + 1;
    }
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) folders.push_back(exe.parent_path().parent_path() / "bundled");
#ifdef IFA_RT_SOURCE_BUNDLED_DIR
  folders.emplace_back(IFA_RT_SOURCE_BUNDLED_DIR);
#endif
  return folders;
}

/// The artifact path for a bundled model name or a path; InvalidArgument lists what was searched.
inline std::string resolve_model(const std::string& model, const std::string& where) {
  if (model.find('/') != std::string::npos || ends_with(model, ".pt") || ends_with(model, ".pth") ||
      ends_with(model, ".pt2"))
    return model;
  std::error_code ec;
  std::set<std::string> names;
  std::string searched;
  for (const fs::path& folder : model_folders()) {
    const fs::path candidate = folder / (model + kModelSuffix);
    if (fs::is_regular_file(candidate, ec)) return candidate.string();
    searched += (searched.empty() ? "" : ", ") + folder.string();
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string file = it->path().filename().string();
      if (ends_with(file, kModelSuffix)) names.insert(file.substr(0, file.size() - kModelSuffix.size()));
    }
    ec.clear();
  }
  if (fs::is_regular_file(model, ec)) return model;
  std::string listing;
  for (const std::string& name : names) listing += (listing.empty() ? "" : ", ") + name;
  throw ifa_rt::InvalidArgument(where + ": 'model': expected an artifact path or a bundled model name (" +
                                (listing.empty() ? "none found" : listing) + "), got '" + model + "' (searched " +
                                (std::getenv("IFA_RT_MODELS") ? "" : "$IFA_RT_MODELS unset, ") + searched + ")");
}

}  // namespace tools
