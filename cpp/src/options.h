#pragma once
// Internal helpers around Options (no torch).
#include <string>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// The largest input height or width, planned or not: beyond it one image's activations
/// exceed any machine's memory, and Linux would OOM-kill the process instead of failing.
constexpr int64_t kMaxSide = 16384;

/// A parsed device string.
struct DeviceSpec {
  bool cuda = false;
  int index = 0;
};

/// Parses "cpu", "cuda", "cuda:N"; throws InvalidArgument naming 'device'.
DeviceSpec parse_device(const std::string& device);

/// Parses "fp32", "fp16", "bf16" (also "float32", "float16", "bfloat16").
Precision parse_precision(const std::string& value);

/// "[2,360,480,3]".
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace ifa_rt::detail
