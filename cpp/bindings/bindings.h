#pragma once
// What the pieces of the `_core` module share.
#include <pybind11/pybind11.h>

#include <vector>

#include "ifa_rt/segmenter.h"

/// Binds ifa_rt::Options and ifa_rt::BatcherOptions (options_binding.cpp).
void bind_options(pybind11::module_& m);

/// Planned shapes as a list of (height, width) tuples.
pybind11::list shapes_to_list(const std::vector<ifa_rt::Shape>& shapes);
