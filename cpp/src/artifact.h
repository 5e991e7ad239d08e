#pragma once
// Loading and validating an `.ifa.pt` artifact (docs/artifact.md, format version 1).
#include <string>

#include "ifa_rt/segmenter.h"

namespace torch::jit {
struct Module;
}

namespace ifa_rt::detail {

/// The artifact format versions this runtime reads.
constexpr int kFormatVersion = 1;
/// The metadata file inside the archive.
constexpr const char* kMetadataFile = "ifa_rt.json";

/// Parses and validates the metadata JSON. Throws ifa_rt::Error with
/// "metadata 'ifa_rt.json': '<key>': expected <what>, got <value>" (no path prefix).
Metadata parse_metadata(const std::string& json);

/// Loads the TorchScript archive at `path` on CPU with its metadata, checks the format
/// version, the required keys and the `forward`/`logits` methods, and puts the module in
/// eval mode. Throws ifa_rt::Error "failed to load artifact '<path>': ...".
torch::jit::Module load_artifact(const std::string& path, Metadata* metadata);

/// A frozen, fully inlined module whose `forward` runs `method` of `module` (an eval-mode
/// artifact module): freezing a wrapper, rather than preserving `logits` on the original,
/// lets every submodule and weight fold into constants. Weights are shared with `module`.
torch::jit::Module freeze_method(const torch::jit::Module& module, const std::string& method);

/// Calls the artifact's optional `configure_cache(planned, capacity)` method (docs/artifact.md)
/// with the planned input shapes and Options::shape_cache; call it before freezing, after any
/// dtype/device change, so the values it sets fold into the frozen graph.
void configure_cache(torch::jit::Module& module, const Options& options);

/// Checks the options' planned shapes against the artifact (min_size). Throws InvalidArgument.
void check_plan(const Options& options, const Metadata& metadata);

/// Reads only the metadata of the artifact at `path` (validated as above).
Metadata read_metadata(const std::string& path);

}  // namespace ifa_rt::detail
