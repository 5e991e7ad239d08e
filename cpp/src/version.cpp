#include "ifa_rt/version.h"

namespace ifa_rt {

std::string version() { return IFA_RT_VERSION; }

std::string torch_version() { return IFA_RT_TORCH_VERSION; }

bool has_cuda_engine() {
#ifdef IFA_RT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace ifa_rt
