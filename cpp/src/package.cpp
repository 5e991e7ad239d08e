// AOTInductor package facts and the machine check (docs/artifact.md). No torch here.
#include "package.h"

#include <sys/utsname.h>

#include <fstream>
#include <map>
#include <sstream>

#include "artifact.h"
#include "json_read.h"

namespace ifa_rt::detail {
namespace {

using json::brief;
using json::find;
using json::is_integer;
using json::Json;
using json::number;

[[noreturn]] void bad(const std::string& key, const std::string& what, const std::string& got) {
  throw Error(std::string("metadata '") + kMetadataFile + "': 'aoti." + key + "': expected " + what + ", got " + got);
}

std::string string_field(const Json& block, const std::string& key) {
  const Json* v = find(block, key);
  if (v == nullptr || !v->is_string()) bad(key, "a string", brief(v));
  return v->get<std::string>();
}

// "2.13.0+cpu" -> "2.13": packages are tied to the torch minor version that compiled them.
std::string minor_version(const std::string& v) {
  const size_t first = v.find('.');
  if (first == std::string::npos) return v;
  const size_t second = v.find_first_of(".+", first + 1);
  return v.substr(0, second);
}

// /proc/cpuinfo flags that an inductor ISA token needs (inductor compiles "avx512" with
// -mavx512f -mavx512dq -mavx512vl -mavx512bw).
std::vector<std::string> flags_for(const std::string& token) {
  static const std::map<std::string, std::vector<std::string>> known{
      {"avx2", {"avx2", "fma"}},
      {"avx512", {"avx512f", "avx512dq", "avx512vl", "avx512bw"}},
      {"amx", {"amx_tile"}},
      {"amx_tile", {"amx_tile"}},
  };
  auto it = known.find(token);
  return it == known.end() ? std::vector<std::string>{token} : it->second;
}

}  // namespace

bool is_package_path(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".pt2") == 0;
}

PackageInfo parse_package_info(const std::string& text) {
  Json root;
  try {
    root = json::parse(text);
  } catch (const std::exception& e) {
    throw Error(std::string("metadata '") + kMetadataFile + "': not valid JSON: " + e.what());
  }
  const Json* block = find(root, "aoti");
  if (block == nullptr || !block->is_object())
    throw Error(std::string("metadata '") + kMetadataFile +
                "': 'aoti': expected an object (an AOTInductor package), got " + brief(block));
  PackageInfo p;
  p.device = string_field(*block, "device");
  p.cpu_isa = string_field(*block, "cpu_isa");
  p.machine = string_field(*block, "machine");
  p.torch_version = string_field(*block, "torch_version");
  p.precision = string_field(*block, "precision");
  p.fallback = string_field(*block, "fallback");
  if (const Json* output = find(*block, "output")) {  // absent in packages before coarse logits
    if (!output->is_string() || (*output != "labels" && *output != "coarse_logits"))
      bad("output", "\"labels\" or \"coarse_logits\"", brief(output));
    p.output = output->get<std::string>();
  }
  const Json* threads = find(*block, "threads");
  if (threads == nullptr || !is_integer(*threads) || std::fabs(number(*threads)) > 1e6)
    bad("threads", "an integer", brief(threads));
  p.threads = static_cast<int>(number(*threads));
  const Json* buckets = find(*block, "buckets");
  if (buckets == nullptr || !buckets->is_array() || buckets->empty())
    bad("buckets", "a non-empty list of [batch, height, width]", brief(buckets));
  for (const Json& b : *buckets) {
    if (!b.is_array() || b.size() != 3) bad("buckets", "[batch, height, width] triples", brief(b));
    for (const Json& v : b)
      if (!is_integer(v) || number(v) < 1 || number(v) > 1e6) bad("buckets", "positive integers", brief(b));
    p.buckets.push_back(
        {static_cast<int64_t>(number(b[0])), static_cast<int64_t>(number(b[1])), static_cast<int64_t>(number(b[2]))});
  }
  return p;
}

std::string package_model_name(const Bucket& bucket) {
  return "labels_" + std::to_string(bucket.batch) + "x" + std::to_string(bucket.height) + "x" +
         std::to_string(bucket.width);
}

std::string package_mismatch(const PackageInfo& package, const std::set<std::string>& cpu_flags,
                             const std::string& machine, const std::string& torch_version) {
  if (package.device != "cpu" && package.device != "cuda")
    return "it was compiled for device '" + package.device + "'; this runtime runs CPU and CUDA packages";
  if (!machine.empty() && package.machine != machine)
    return "it was compiled for a " + package.machine + " machine, this one is " + machine;
  if (minor_version(package.torch_version) != minor_version(torch_version))
    return "it was compiled with torch " + package.torch_version + ", this runtime has torch " + torch_version;
  // A CUDA package's kernels are cubins for its GPU, which the CUDA engine checks on load.
  if (package.device == "cuda" || cpu_flags.empty() || package.cpu_isa == "none") return "";
  std::istringstream tokens(package.cpu_isa);
  for (std::string token; tokens >> token;)
    for (const std::string& flag : flags_for(token))
      if (!cpu_flags.count(flag))
        return "it was compiled for CPU ISA '" + package.cpu_isa + "', and this CPU lacks '" + flag + "'";
  return "";
}

std::set<std::string> host_cpu_flags() {
  std::ifstream f("/proc/cpuinfo");
  std::set<std::string> flags;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;) flags.insert(w);
    break;
  }
  return flags;
}

std::string host_machine() {
  struct utsname u;
  return uname(&u) == 0 ? std::string(u.machine) : std::string();
}

}  // namespace ifa_rt::detail
