#pragma once
// The engine interface the Segmenter drives: one per device kind and artifact form
// (engine_cpu.cpp, engine_cuda.cpp, engine_aoti.cpp, engine_aoti_cuda.cpp). An engine owns
// the frozen module, the per-bucket buffers and the warm-up; the Segmenter owns validation,
// batching, locking and stats. No torch here.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {

/// One image [H,W,3] uint8 in caller memory, with element strides.
struct ImageRef {
  const uint8_t* data = nullptr;
  int64_t height = 0, width = 0;
  int64_t stride_h = 0, stride_w = 0, stride_c = 0;
  bool contiguous() const { return stride_c == 1 && stride_w == 3 && stride_h == 3 * width; }
};

/// What a run produces per image: labels (H*W uint8) or logits (C*H*W float32).
enum class Output { labels, logits };

/// Allocation counters of an engine (monotonic since construction).
struct AllocCounters {
  int64_t new_blocks = 0;  ///< memory taken from the system / device allocator
  int64_t new_bytes = 0;
  int64_t cached_hits = 0;   ///< CPU: requests served from the engine's arena
  int64_t cached_bytes = 0;  ///< CPU: bytes the arena holds (free + in use)
  int64_t cached_blocks = 0;
  int64_t peak_live_bytes = 0;  ///< CPU: most bytes alive in one planned call since warm-up's last pass
};

/// run_device's bucket for an input size no bucket was planned for.
inline constexpr size_t kUnplanned = static_cast<size_t>(-1);
/// memory_device's answers that are not a device index.
inline constexpr int kHostMemory = -1, kManagedMemory = -2;

/// A planned run whose device work is queued but whose outputs are not yet written.
class PendingRun {
 public:
  virtual ~PendingRun() = default;
  /// Waits for the device and writes the outputs; called once, without the Segmenter's lock.
  /// An unfinished run's destructor waits for its work and frees its staging without output.
  virtual void finish() = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// The plan: runtime, buckets (same order as make_buckets) and buffers.
  virtual Plan plan() const = 0;
  /// Runs planned bucket `bucket` on n <= its batch same-shaped images; writes image i's
  /// output to outs[i]. Returns false when the output kind is not planned for the bucket
  /// and the run went through the unplanned path instead.
  virtual bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) = 0;
  /// Same as run, but may return before the outputs are written, leaving `pending` to finish
  /// them (null: done). CUDA: stages the images into one of two pinned slots of the shape
  /// (waiting while both are in use) and queues the copies and the replay, so that the next
  /// run can be staged while this one computes. The default runs synchronously.
  virtual bool start(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
                     std::unique_ptr<PendingRun>* pending);
  /// Unplanned shape: one batch of n same-shaped images, with no preallocated buffers.
  virtual void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) = 0;
  /// Device-memory run (CUDA engine): images and outs are memory on the engine's device. The
  /// work is queued after what `stream` (a cudaStream_t) has queued, `stream` waits for it,
  /// and the call returns once it is queued. `bucket` is kUnplanned when no bucket fits.
  /// Returns false when it went through the unplanned path. Other engines: Error.
  virtual bool run_device(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs,
                          void* stream);
  /// The CUDA device a pointer's memory is on, kHostMemory (also for engines that have no
  /// CUDA runtime to ask), or kManagedMemory (usable from the host and the devices).
  virtual int memory_device(const void* p) const;
  /// Plans `shape` at run time (Options::learn_shapes): appends its buckets (batch sizes of
  /// the engine's max_batch) after the existing ones, allocates and warms them up. Returns
  /// false when this engine cannot plan at run time; on an Error nothing was added.
  virtual bool add_shape(const Shape& shape);
  /// Allocation counters; only runs on planned buckets are measured.
  virtual AllocCounters counters() const = 0;
  /// Wall time of the first warm-up call (the profiling run), milliseconds.
  virtual double first_call_ms() const = 0;
};

/// How many calls a Segmenter usefully serves at once: 2 on a CUDA engine (one stages its
/// images while the other's copies and replay run), else 1 (a CPU engine computes on the
/// calling thread). The Batcher's workers and the SegmenterPool's seats follow it.
int overlapping_calls(const Segmenter& segmenter);

/// Builds the CPU engine (engine_cpu.cpp): load, freeze, optimise, plan, warm up.
/// `resolved` receives the options after resolution (runtime "auto" -> what it chose).
std::unique_ptr<Engine> make_cpu_engine(const std::string& path, const Options& options, Metadata* metadata,
                                        Options* resolved);

/// Builds the AOTInductor engine (engine_aoti.cpp; a package compiled for CUDA:
/// engine_aoti_cuda.cpp) for a `.pt2` package: checks the package against this machine and
/// the options, loads one compiled model per bucket, warms up.
std::unique_ptr<Engine> make_aoti_engine(const std::string& path, const Options& options, Metadata* metadata,
                                         Options* resolved);

/// Builds the CUDA engine (engine_cuda.cpp); throws Error when the CUDA engine is not
/// compiled in or there is no CUDA device.
std::unique_ptr<Engine> make_cuda_engine(const std::string& path, const Options& options, Metadata* metadata);

}  // namespace ifa_rt::detail
