// pybind11 module ifa_rt._core: the C++ runtime exposed to Python.
#include <pybind11/pybind11.h>

#include "ifa_rt/version.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "ifa_rt C++ runtime (LibTorch) bindings";
  m.def("version", &ifa_rt::version, "The ifa_rt C++ library version.");
  m.def("torch_version", &ifa_rt::torch_version,
        "The torch version the extension was compiled against.");
  m.def("has_cuda_engine", &ifa_rt::has_cuda_engine,
        "True when the CUDA engine was compiled in.");
}
