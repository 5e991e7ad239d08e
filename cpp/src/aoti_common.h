#pragma once
// What the AOTInductor engines share (engine_aoti.cpp on the CPU, engine_aoti_cuda.cpp on
// CUDA): the package's contents, the plan resolved against it, and the TorchScript fallback.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "package.h"

namespace ifa_rt::detail {

/// A package's `aoti` block and the bytes of the TorchScript artifact inside it.
struct PackageContents {
  PackageInfo info;
  std::string fallback_bytes;
};

/// Resolves `options` against the package at `path`: precision (the default fp32 means the
/// package's; another must be it) and, with no shapes given, the package's shapes and largest
/// batch. Returns the plan's buckets; throws InvalidArgument when one was not compiled in.
std::vector<Bucket> resolve_package_plan(const PackageInfo& package, const std::string& path, Options* options);

/// The package's TorchScript artifact as an engine, which serves unplanned shapes and logits:
/// `make(path)` builds it (a CPU or CUDA engine with no planned buckets) from a temporary
/// copy of the bytes, removed once it is loaded.
std::unique_ptr<Engine> make_fallback_engine(const std::string& bytes,
                                             const std::function<std::unique_ptr<Engine>(const std::string&)>& make);

/// Builds the AOTInductor engine for a CUDA package (engine_aoti_cuda.cpp); Error when the
/// CUDA engine is not compiled in or there is no CUDA device.
std::unique_ptr<Engine> make_aoti_cuda_engine(const std::string& path, const Options& options, Metadata* metadata,
                                              const PackageContents& package, Options* resolved);

}  // namespace ifa_rt::detail
