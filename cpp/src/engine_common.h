#pragma once
// Helpers shared by the engines that include torch (engine_cpu.cpp, engine_aoti.cpp):
// error text, dtype mapping, caller images as tensors, result checks and copies.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <string>

#include "alloc_counter.h"
#include "engine.h"

namespace ifa_rt::detail {

using Clock = std::chrono::steady_clock;

/// Milliseconds since t0.
double ms_since(Clock::time_point t0);

/// The first line of an error text (the rest is a backtrace).
std::string first_line(const std::string& what);

/// The line of an error that says what went wrong: the TorchScript interpreter puts a
/// traceback first and the original error ("RuntimeError: ...") last.
std::string error_summary(const std::string& what);

/// The ATen dtype of a precision.
at::ScalarType scalar_type(Precision p);

/// True when n images are consecutive C-contiguous [H,W,3] blocks of one array.
bool consecutive(const ImageRef* images, int64_t n);

/// A uint8 [H,W,3] view of one caller image (no copy).
at::Tensor image_tensor(const ImageRef& im);

/// The graph input for n images and a uint8 [B,H,W,3] `buffer` (B >= n): the caller's
/// memory itself when n == B and the images are consecutive (zero copy), else `buffer` with
/// the images copied into its first n slots (the rest is padding).
at::Tensor batch_input(const ImageRef* images, int64_t n, const at::Tensor& buffer);

/// Copies image i of a [B,...] result into outs[i] (contiguous uint8 labels or float32
/// logits), converting dtype and layout on the way: no intermediate tensor is allocated.
void copy_out(const at::Tensor& result, int64_t n, Output what, void* const* outs);

/// Checks a result against the contract (docs/artifact.md) for a b x h x w input with c
/// classes; throws Error naming `forward`/`logits`, what was expected and what came.
void check_result(const at::Tensor& t, Output what, int64_t b, int64_t h, int64_t w, int64_t c);

/// The end of a CPU engine's warm-up: runs `pass` (every planned bucket once) in new epochs
/// of `cache` (each fits the slab to the calls before it) until a whole pass takes no new
/// memory and fills the slab to its end (at most 4 passes), then frees the small blocks that
/// pass did not use. Returns the counters that steady-state counts start from; their
/// peak_live_bytes is the largest bucket's peak live memory.
BlockCache::Counters settle(BlockCache& cache, const std::function<void()>& pass);

/// Adds `cache`'s arena to a CPU plan: one buffer, and the arena/peak figures.
void arena_info(const BlockCache& cache, Plan* plan);

/// An engine's allocation counters since warm-up (`warm` from `settle`).
AllocCounters counters_since(const BlockCache& cache, const BlockCache::Counters& warm);

}  // namespace ifa_rt::detail
