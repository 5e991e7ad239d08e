// Options and BatcherOptions: defaults live in the public headers; here they are validated
// (the one place) and Options parsed by name.
#include "options.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "ifa_rt/batcher.h"

namespace ifa_rt {
namespace {

[[noreturn]] void bad(const std::string& key, const std::string& what, const std::string& got) {
  throw InvalidArgument("Options: '" + key + "': expected " + what + ", got " + got);
}

const char* const kKnownKeys[] = {
    "device",        "precision",    "max_batch",         "shapes", "threads",     "strict", "plan_logits",
    "channels_last", "runtime",      "optimize",          "warmup", "shape_cache", "tf32",   "batch_invariant",
    "learn_shapes",  "trim_heap_mb", "mmap_threshold_kb", "fuser"};

int64_t parse_int(const std::string& key, const std::string& value) {
  char* end = nullptr;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0') bad(key, "an integer", "'" + value + "'");
  return v;
}

bool parse_bool(const std::string& key, const std::string& value) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  bad(key, "a boolean (true/false)", "'" + value + "'");
}

// "360x480,512x1024"
std::vector<Shape> parse_shapes(const std::string& value) {
  std::vector<Shape> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto x = item.find('x');
    if (x == std::string::npos) bad("shapes", "HxW[,HxW...]", "'" + value + "'");
    out.push_back({parse_int("shapes", item.substr(0, x)), parse_int("shapes", item.substr(x + 1))});
  }
  return out;
}

}  // namespace

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::uint8:
      return "uint8";
    case DType::int8:
      return "int8";
    case DType::int16:
      return "int16";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::float16:
      return "float16";
    case DType::bfloat16:
      return "bfloat16";
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::bool_:
      return "bool";
  }
  return "?";
}

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::fp32:
      return "fp32";
    case Precision::fp16:
      return "fp16";
    case Precision::bf16:
      return "bf16";
    case Precision::int8:
      return "int8";
  }
  return "?";
}

std::string Bucket::name() const {
  return std::to_string(batch) + "x" + std::to_string(height) + "x" + std::to_string(width);
}

int64_t Plan::total_bytes() const {
  int64_t total = 0;
  for (const auto& b : buffers) total += b.bytes;
  return total;
}

void Options::validate() const {
  detail::parse_device(device);
  if (max_batch < 1 || max_batch > 1024) bad("max_batch", "an integer in [1, 1024]", std::to_string(max_batch));
  for (const Shape& s : shapes)
    if (s.height < 1 || s.width < 1 || s.height > detail::kMaxSide || s.width > detail::kMaxSide)
      bad("shapes", "(height, width) pairs in [1, " + std::to_string(detail::kMaxSide) + "]",
          std::to_string(s.height) + "x" + std::to_string(s.width));
  std::vector<Shape> sorted = shapes;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) bad("shapes", "distinct shapes", "a duplicate");
  if (threads < 0 || threads > 1024)
    bad("threads", "an integer in [0, 1024] (0 = torch's default)", std::to_string(threads));
  if (runtime != "auto" && runtime != "static" && runtime != "jit" && runtime != "aoti")
    bad("runtime", "'auto', 'static', 'jit' or 'aoti'", "'" + runtime + "'");
  // torch 2.13: Static Runtime segfaults on optimize_for_inference's MKLDNN graph (also from
  // Python: torch._C._jit_to_static_module), so the two are never combined.
  if (optimize && runtime == "static")
    bad("optimize",
        "false with runtime 'static' (Static Runtime cannot run the MKLDNN graph "
        "optimize_for_inference makes; use runtime 'jit')",
        "true");
  if (shape_cache < 0 || shape_cache > 1024) bad("shape_cache", "an integer in [0, 1024]", std::to_string(shape_cache));
  if (learn_shapes < 0 || learn_shapes > 64)
    bad("learn_shapes", "an integer in [0, 64] (0 = never plan unplanned sizes)", std::to_string(learn_shapes));
  if (trim_heap_mb < 0 || trim_heap_mb > 1048576)
    bad("trim_heap_mb", "an integer in [0, 1048576] (0 = never trim)", std::to_string(trim_heap_mb));
  if (mmap_threshold_kb < 0 || mmap_threshold_kb > 32768)
    bad("mmap_threshold_kb", "an integer in [0, 32768] (0 = leave the allocator as it is)",
        std::to_string(mmap_threshold_kb));
  if (fuser != "auto" && fuser != "on" && fuser != "off") bad("fuser", "'auto', 'on' or 'off'", "'" + fuser + "'");
  // int8 exists only as a quantized CPU package; a CUDA engine would silently run fp32.
  if (precision == Precision::int8 && detail::parse_device(device).cuda)
    bad("precision",
        "'fp32', 'fp16' or 'bf16' on device '" + device +
            "' (int8 runs on the CPU only, from a quantized AOTInductor package)",
        "'int8'");
  if (warmup < 2 || warmup > 100)
    bad("warmup", "an integer in [2, 100] (the profiling executor needs 2 calls)", std::to_string(warmup));
}

void BatcherOptions::validate() const {
  auto bad_int = [](const std::string& key, const std::string& what, int64_t got) {
    throw InvalidArgument("BatcherOptions: '" + key + "': expected " + what + ", got " + std::to_string(got));
  };
  constexpr int64_t kMaxBatch = 1024;          // as Options::max_batch
  constexpr int64_t kMaxDelayUs = 60'000'000;  // one minute: anything longer is a unit mix-up
  if (max_batch < 0 || max_batch > kMaxBatch)
    bad_int("max_batch", "an integer in [0, " + std::to_string(kMaxBatch) + "] (0: the engine's)", max_batch);
  if (max_delay_us < 0 || max_delay_us > kMaxDelayUs)
    bad_int("max_delay_us", "microseconds in [0, " + std::to_string(kMaxDelayUs) + "]", max_delay_us);
}

Options Options::from_map(const std::map<std::string, std::string>& values) {
  Options o;
  for (const auto& [key, value] : values) {
    if (key == "device")
      o.device = value;
    else if (key == "precision")
      o.precision = detail::parse_precision(value);
    else if (key == "max_batch")
      o.max_batch = parse_int(key, value);
    else if (key == "shapes")
      o.shapes = parse_shapes(value);
    else if (key == "threads")
      o.threads = static_cast<int>(parse_int(key, value));
    else if (key == "strict")
      o.strict = parse_bool(key, value);
    else if (key == "plan_logits")
      o.plan_logits = parse_bool(key, value);
    else if (key == "channels_last")
      o.channels_last = parse_bool(key, value);
    else if (key == "tf32")
      o.tf32 = parse_bool(key, value);
    else if (key == "batch_invariant")
      o.batch_invariant = parse_bool(key, value);
    else if (key == "runtime")
      o.runtime = value;
    else if (key == "optimize")
      o.optimize = parse_bool(key, value);
    else if (key == "warmup")
      o.warmup = static_cast<int>(parse_int(key, value));
    else if (key == "shape_cache")
      o.shape_cache = static_cast<int>(parse_int(key, value));
    else if (key == "learn_shapes")
      o.learn_shapes = static_cast<int>(parse_int(key, value));
    else if (key == "trim_heap_mb")
      o.trim_heap_mb = static_cast<int>(parse_int(key, value));
    else if (key == "fuser")
      o.fuser = value;
    else if (key == "mmap_threshold_kb")
      o.mmap_threshold_kb = static_cast<int>(parse_int(key, value));
    else {
      std::string known;
      for (const char* k : kKnownKeys) known += (known.empty() ? "" : ", ") + std::string(k);
      throw InvalidArgument("Options: unknown option '" + key + "' (known: " + known + ")");
    }
  }
  o.validate();
  return o;
}

namespace detail {

DeviceSpec parse_device(const std::string& device) {
  if (device == "cpu") return {false, 0};
  if (device == "cuda") return {true, 0};
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos && device.size() < 9)
    return {true, std::stoi(device.substr(5))};
  bad("device", "'cpu', 'cuda' or 'cuda:N'", "'" + device + "'");
}

Precision parse_precision(const std::string& value) {
  if (value == "fp32" || value == "float32") return Precision::fp32;
  if (value == "fp16" || value == "float16") return Precision::fp16;
  if (value == "bf16" || value == "bfloat16") return Precision::bf16;
  if (value == "int8") return Precision::int8;
  bad("precision", "'fp32', 'fp16', 'bf16' or 'int8'", "'" + value + "'");
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? "," : "") + std::to_string(shape[k]);
  return s + "]";
}

}  // namespace detail
}  // namespace ifa_rt
