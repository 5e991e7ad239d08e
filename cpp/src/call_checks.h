#pragma once
// What a Segmenter checks before a call reaches an engine: the images' dtype, rank, channels,
// strides and sizes (each error names the input and what was expected), and that a plan fits
// in memory. No torch here.
#include <cstdint>
#include <string>
#include <vector>

#include "engine.h"
#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// Throws InvalidArgument "<where>: input '<name>': expected <what>, got <got>".
[[noreturn]] void bad_input(const std::string& where, const std::string& name, const std::string& what,
                            const std::string& got);

/// "HxW".
std::string hxw(int64_t height, int64_t width);

/// Validates one [H,W,3] (or, with allow_batch, [B,H,W,3]) uint8 view and appends one ImageRef
/// per image; `min_size` is the artifact's smallest side.
void collect_images(const TensorView& view, const std::string& where, bool allow_batch, int64_t min_size,
                    std::vector<ImageRef>* out);

/// Refuses a plan whose input buffers alone exceed physical memory: allocating them would get
/// the process OOM-killed (Linux overcommits) rather than raise.
void check_plan_memory(const Options& options);

}  // namespace ifa_rt::detail
