# Settings a CUDA build of torch needs before find_package(Torch) on a machine without a GPU
# (see shared/CUDA_BUILD.md): a C++17 CUDA dialect, an explicit arch list (no GPU to
# detect), and nvrtc from the wheel toolkit when the system toolkit lacks it.
get_filename_component(_site_packages "${TORCH_CMAKE_PREFIX}/../../.." ABSOLUTE)
set(IFA_RT_WHEEL_CUDA "${_site_packages}/nvidia/cu13")
if(NOT DEFINED CMAKE_CUDA_STANDARD)
  set(CMAKE_CUDA_STANDARD 17)
endif()
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
if(EXISTS "${IFA_RT_WHEEL_CUDA}/lib")
  find_library(CUDA_nvrtc_LIBRARY NAMES nvrtc libnvrtc.so.13 HINTS "${IFA_RT_WHEEL_CUDA}/lib" NO_DEFAULT_PATH)
endif()
