// libFuzzer target: the whole artifact loader (cpp/src/artifact.cpp + metadata): the bytes
// are written to a file and loaded with ifa_rt::detail::load_artifact, as Segmenter does.
//
// A load must either succeed (then the module has `forward`/`logits` and valid metadata) or
// raise ifa_rt::Error; any other exception, a crash or a sanitizer report is a finding.
// LibTorch (the zip reader, the unpickler) is not instrumented, so coverage guidance sees
// only our code; crashes inside LibTorch are still caught, and reported as such.
#include <torch/script.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "artifact.h"

namespace {

std::string scratch_path() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/ifa_rt_fuzz_artifact." + std::to_string(getpid()) + ".pt";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = scratch_path();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    ifa_rt::Metadata m;
    torch::jit::Module module = ifa_rt::detail::load_artifact(path, &m);
    if (!module.find_method("forward") || !module.find_method("logits")) {
      __builtin_printf("fuzz_artifact: loaded without forward/logits\n");
      std::abort();
    }
    if (m.num_classes < 1 || static_cast<int64_t>(m.classes.size()) != m.num_classes) {
      __builtin_printf("fuzz_artifact: loaded with inconsistent metadata\n");
      std::abort();
    }
  } catch (const ifa_rt::Error&) {
    // A clear rejection: the expected outcome for a mutated archive.
  }
  return 0;
}
