#pragma once
// AOTInductor packages (`.pt2`, docs/artifact.md): what the package says about itself and
// whether this machine can run it. Pure logic, no torch.
#include <set>
#include <string>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// The `aoti` block of a package's `ifa_rt.json`.
struct PackageInfo {
  std::string device;         ///< "cpu" or "cuda"
  std::string cpu_isa;        ///< inductor's vector ISA, e.g. "avx512 avx512_vnni" ("none": CUDA)
  std::string machine;        ///< e.g. "x86_64"
  std::string torch_version;  ///< the torch that compiled it
  std::string precision;      ///< "fp32"
  std::string fallback;       ///< record of the TorchScript artifact inside the package
  /// What each model returns: "labels", or "coarse_logits" (float32 [B,C,h,w] before the
  /// final upsample; the runtime finishes the labels, upsample_labels.h).
  std::string output = "labels";
  int threads = 0;              ///< intra-op threads it was compiled for
  std::vector<Bucket> buckets;  ///< one compiled model per bucket
};

/// True for a path naming an AOTInductor package (".pt2").
bool is_package_path(const std::string& path);

/// Parses the `aoti` block of the metadata JSON; throws Error naming the key.
PackageInfo parse_package_info(const std::string& text);

/// The compiled model of one bucket inside the package: "labels_2x360x480".
std::string package_model_name(const Bucket& bucket);

/// Why this package cannot run on a machine with `cpu_flags` (/proc/cpuinfo names),
/// `machine` and `torch_version`; empty when it can. A CUDA package's CPU ISA is not checked.
std::string package_mismatch(const PackageInfo& package, const std::set<std::string>& cpu_flags,
                             const std::string& machine, const std::string& torch_version);

/// This CPU's feature flags as /proc/cpuinfo names them (empty where unreadable).
std::set<std::string> host_cpu_flags();

/// This machine's architecture as uname reports it ("x86_64").
std::string host_machine();

}  // namespace ifa_rt::detail
