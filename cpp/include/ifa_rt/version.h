#pragma once
// Version facts of the ifa_rt library (no torch includes).
#include <string>

namespace ifa_rt {

/// The ifa_rt library version, e.g. "0.1.0".
std::string version();

/// The torch version this library was compiled against, e.g. "2.13.0+cpu".
std::string torch_version();

/// True when the CUDA engine was compiled in.
bool has_cuda_engine();

}  // namespace ifa_rt
