// The Engine interface's defaults, and what does not depend on the engine compiled in (no
// torch here).
#include "engine.h"

#include "aoti_common.h"

namespace ifa_rt::detail {

int overlapping_calls(const Segmenter& segmenter) { return segmenter.plan().runtime == "cuda-graph" ? 2 : 1; }

bool Engine::start(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
                   std::unique_ptr<PendingRun>* pending) {
  pending->reset();
  return run(bucket, images, n, what, outs);
}
bool Engine::run_device(size_t, const ImageRef*, int64_t, Output, void* const*, void*) {
  throw Error("Segmenter: device-memory calls need the CUDA engine");
}
int Engine::memory_device(const void*) const { return kHostMemory; }
bool Engine::add_shape(const Shape&) { return false; }

#ifndef IFA_RT_WITH_CUDA
std::unique_ptr<Engine> make_cuda_engine(const std::string&, const Options& options, Metadata*) {
  throw Error("Segmenter: option 'device': expected an available CUDA device, got '" + options.device +
              "': no CUDA device (this ifa_rt was built without the CUDA engine; torch has no CUDA)");
}
std::unique_ptr<Engine> make_aoti_cuda_engine(const std::string& path, const Options& options, Metadata* metadata,
                                              const PackageContents&, Options*) {
  return make_cuda_engine(path, options, metadata);  // throws the same "no CUDA device" error
}
#endif

}  // namespace ifa_rt::detail
