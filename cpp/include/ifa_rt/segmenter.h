#pragma once
// The public C++ API of ifa_rt: value types and one pimpl Segmenter (no torch includes).
//
// A Segmenter loads an `.ifa.pt` artifact (docs/artifact.md) and serves it with a memory
// plan: every buffer for the planned buckets (batch sizes 1, 2, 4, .. up to max_batch,
// times the planned input shapes) is allocated and warmed up at construction; a call on a
// planned bucket then reuses them. Errors are ifa_rt::Error (runtime failures) or
// ifa_rt::InvalidArgument (bad options or inputs), with messages of the form
// `<where>: '<name>': expected <what>, got <value>`.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ifa_rt {

/// A runtime failure: a missing/corrupt/incompatible artifact, no CUDA device, a failed
/// warm-up or capture, an inference error. Python: RuntimeError.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad option or input value (wrong dtype, rank, channels, unplanned shape in strict
/// mode, ...). Derives std::invalid_argument so Python sees ValueError.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Element type of a TensorView.
enum class DType { uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64, bool_ };

/// The name of a dtype as numpy/torch spell it ("uint8", "float32", "bool").
std::string to_string(DType dtype);

/// Compute precision of the engine. The artifact's graph computes in the dtype of its
/// `mean` buffer; logits are returned as float32 whatever the precision.
/// Compute precision. int8 exists only in quantized AOTInductor packages (ifa-rt quantize).
enum class Precision { fp32, fp16, bf16, int8 };

/// "fp32", "fp16", "bf16" or "int8".
std::string to_string(Precision precision);

/// A borrowed, read-only view of caller memory (no copy is made until the engine stages it).
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::uint8;
  std::vector<int64_t> shape;    ///< e.g. {H, W, 3} or {B, H, W, 3}
  std::vector<int64_t> strides;  ///< in elements, one per dimension; empty = C-contiguous
};

/// An input height and width.
struct Shape {
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const Shape& o) const { return height == o.height && width == o.width; }
  bool operator<(const Shape& o) const { return height != o.height ? height < o.height : width < o.width; }
};

/// Unplanned calls of one input size after which Options::learn_shapes plans it.
inline constexpr int kLearnAfter = 3;

/// How a Segmenter is built. Defaults are declared here, once.
struct Options {
  std::string device = "cpu";             ///< "cpu", "cuda" or "cuda:N"
  Precision precision = Precision::fp32;  ///< compute dtype (the module's `mean` follows it)
  int64_t max_batch = 1;                  ///< largest batch run at once; bigger calls split
  std::vector<Shape> shapes;              ///< input shapes to plan for (may be empty)
  int threads = 0;                        ///< intra-op threads inside a call; 0 = torch's
  bool strict = false;                    ///< unplanned shape: error (true) or fallback path
  bool plan_logits = false;               ///< also preallocate/capture `logits` per bucket
  /// CPU: make 4-D weights NHWC (artifacts of this exporter already are). CUDA ignores it:
  /// the input is NHWC, so cuDNN runs NHWC and weights are always made NHWC there.
  bool channels_last = false;
  /// CUDA fp32: let cuDNN and cuBLAS use TF32 (faster on Ampere+, ~1e-3 relative error).
  /// Off by default: fp32 means fp32.
  bool tf32 = false;
  /// CPU: "jit" (frozen module), "static" (Static Runtime), or "auto" = "jit" with
  /// optimize = true (measured fastest TorchScript setting; see cpp/README.md). For an
  /// AOTInductor package (a `.pt2` path) "auto" = "aoti", its only runtime.
  std::string runtime = "auto";
  bool optimize = false;  ///< CPU JIT: torch::jit::optimize_for_inference
  int warmup = 2;         ///< warm-up calls per bucket (>= 2: profiling executor)
  /// Unplanned input sizes whose per-shape constants the artifact may keep (an LRU; planned
  /// sizes are always kept): bounds memory whatever sizes are served (docs/artifact.md).
  int shape_cache = 4;
  /// Unplanned input sizes that may get planned buckets at run time (0: none). A size met
  /// kLearnAfter times on the unplanned path is planned like `shapes` (input buffer, warm-up,
  /// block cache) by the call that meets it: steady traffic of a few sizes stops allocating.
  /// Bounded: at most this many sizes, each costing one planned shape's memory (`plan()`);
  /// stats().learned_shapes lists them. CPU and AOTInductor engines (an AOTInductor engine
  /// plans them on its TorchScript fallback); the CUDA engine does not learn.
  int learn_shapes = 4;
  /// MiB the process's resident memory may grow through unplanned runs before the heap's
  /// free memory is returned to the system (glibc malloc_trim, checked against RSS after each
  /// unplanned run; 0: never; a no-op without glibc). glibc raises its mmap threshold as
  /// large blocks are freed and then keeps the unplanned path's multi-MB temporaries in its
  /// heaps. A trim costs 20-40 ms (freed pages are faulted in again). Measured over 100
  /// distinct 0.3-1 MP sizes (2 cores, bundled model, scripts/shape_memory.py): 128 keeps
  /// growth after warm-up under 150 MB by trimming after almost every such call, 9 % slower
  /// than 384, which let RSS swing 656-1101 MB; 256 swings ~240 MB at 0.1-0.3 MP sizes.
  /// It changes no allocator setting of the host process; planned runs never allocate.
  int trim_heap_mb = 128;
  /// KiB at and above which glibc serves an allocation with its own mmap (mallopt
  /// M_MMAP_THRESHOLD, at most 32768), returned to the system when freed; 0 (default): leave
  /// the allocator as it is. PROCESS-WIDE and kept after the Segmenter is gone. A fixed
  /// threshold also stops glibc from raising it as big blocks are freed, so RSS stays flat
  /// without trims, but every large temporary then faults in fresh pages: 4096 measured
  /// 9 % slower than trim_heap_mb = 128 on unplanned 0.3-1 MP calls. A no-op without glibc.
  int mmap_threshold_kb = 0;
  /// An image's labels never depend on what it is batched with: every image of a call runs
  /// on the batch-1 plan (buckets are 1xHxW; max_batch still bounds a call and a Batcher
  /// batch). oneDNN picks kernels and weight blockings per batch size (on AMX CPUs int8
  /// answers then differ on ~0.4 % of pixels between batch 1 and 4), so only one batch size
  /// makes invariance true by design. false: batched buckets 1, 2, 4, .., max_batch (measured
  /// on 2 cores, batch 4 of 360x480: int8 1.22x, TorchScript 1.09x, AOTI 1.0x the images/s).
  bool batch_invariant = true;
  /// TorchScript's TensorExpr fuser on the CUDA engine: "auto" (default) = "on", pinned for
  /// the engine's warm-up, capture and unplanned calls whatever the host process set; "on"
  /// fuses elementwise chains into NVRTC kernels (compiled during warm-up, seconds per
  /// engine); "off" runs every op as its own kernel (faster to build). The CPU engine never
  /// fuses (torch's CPU wheels have no LLVM): "auto" and "off" are accepted, "on" is refused.
  /// AOTInductor packages ignore it (their kernels are compiled ahead of time).
  std::string fuser = "auto";

  /// Build Options from key=value strings (tools, config files). Unknown keys and bad values
  /// are rejected by name: `Options: unknown option 'x' (known: device, ...)`.
  static Options from_map(const std::map<std::string, std::string>& values);

  /// Throws InvalidArgument naming the first bad field.
  void validate() const;
};

/// The artifact's metadata (`ifa_rt.json`), validated on load.
struct Metadata {
  int format_version = 0;
  std::string ifa_rt_version;
  std::string torch_version;
  std::string preset;
  std::string form;
  int64_t num_classes = 0;
  std::vector<std::string> classes;
  std::vector<std::array<uint8_t, 3>> palette;
  int64_t ignore_index = -1;
  std::vector<double> mean;
  std::vector<double> std;
  int64_t min_size = 1;
  std::string json;  ///< the raw JSON text
};

/// One planned bucket: a batch size and an input shape.
struct Bucket {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::string name() const;  ///< "2x360x480"
};

/// One preallocated buffer of the plan.
struct BufferInfo {
  std::string name;            ///< e.g. "input 2x360x480x3" or "arena (...)"
  std::string device;          ///< "cpu", "cpu-pinned", "cuda:0"
  std::string dtype;           ///< "uint8", "float32", ...
  std::vector<int64_t> shape;  ///< empty for arenas
  int64_t bytes = 0;
};

/// What a Segmenter preallocated at construction.
struct Plan {
  std::string device;
  Precision precision = Precision::fp32;
  std::string runtime;  ///< "static-runtime", "jit", "cuda-graph"
  std::vector<Bucket> buckets;
  std::vector<BufferInfo> buffers;
  /// CPU: the arena every bucket and shape shares (one of `buffers`): its bytes and blocks,
  /// and the most bytes alive in one planned call (the largest bucket's peak live memory,
  /// measured in warm-up's last pass over every bucket). 0 on CUDA (graph pools).
  int64_t arena_bytes = 0, arena_blocks = 0, peak_live_bytes = 0;
  int64_t total_bytes() const;
};

/// Latency of one bucket since construction (warm-up excluded).
struct BucketStats {
  Bucket bucket;
  int64_t calls = 0;
  double mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, min_ms = 0, max_ms = 0;
};

/// Counters since construction (warm-up excluded unless named so).
struct Stats {
  int64_t calls = 0;           ///< public calls (segment/logits)
  int64_t images = 0;          ///< images served
  int64_t bucket_runs = 0;     ///< engine runs on planned buckets
  int64_t padded_images = 0;   ///< pad slots computed to fill a bucket
  int64_t fallback_calls = 0;  ///< engine runs on the unplanned (slower, allocating) path
  /// New memory obtained by the engine after warm-up on planned buckets: CPU, blocks that its
  /// cache had to take from the system; CUDA, caching-allocator allocations on its device
  /// during its planned calls (device-wide statistics: concurrent CUDA work of others on the
  /// same device counts too; -1 under the cudaMallocAsync backend, which keeps none).
  int64_t allocations_after_warmup = 0;
  int64_t bytes_allocated_after_warmup = 0;
  /// CPU: allocator requests served from the engine's cache after warm-up (how many tensor
  /// allocations the runtime makes; Static Runtime makes far fewer than the JIT).
  int64_t cached_allocations_after_warmup = 0;
  /// Process-wide: CPU allocations made while engine calls ran that no engine can own
  /// (several calls at once, or threads outside the running call's parallel regions, such as
  /// the host's own); they bypass every block cache. Not counted in any engine's figures.
  int64_t unattributed_allocations_in_calls = 0;
  /// CPU: the engine's arena now (bytes, blocks) and the most bytes alive in one planned call
  /// since warm-up's last pass (Plan::peak_live_bytes, raised if a later call needs more).
  int64_t arena_bytes = 0, arena_blocks = 0, arena_peak_live_bytes = 0;
  int64_t shape_cache = 0;            ///< unplanned sizes whose per-shape constants stay cached (Options)
  std::vector<Shape> learned_shapes;  ///< sizes planned at run time (Options::learn_shapes)
  int64_t heap_trims = 0;             ///< free heap memory returned to the system (trim_heap_mb)
  double construction_ms = 0;         ///< load + plan + warm-up
  double first_call_ms = 0;           ///< the first warm-up call (profiling run)
  std::vector<BucketStats> buckets;
};

/// A labels result: uint8 class indices, shape [B,H,W] (or [H,W] for a single image).
struct Result {
  std::vector<int64_t> shape;
  std::vector<uint8_t> labels;
  double milliseconds = 0;
};

/// A logits result: float32, shape [B,C,H,W] (or [C,H,W] for a single image).
struct LogitsResult {
  std::vector<int64_t> shape;
  std::vector<float> logits;
  double milliseconds = 0;
};

/// A loaded, planned and warmed-up segmentation engine. Thread-safe: concurrent calls are
/// serialised on its buffers (use SegmenterPool for throughput). Move-only.
class Segmenter {
 public:
  /// Loads and validates the artifact, builds the plan, allocates and warms up every bucket
  /// (CUDA: captures one graph per bucket). Throws InvalidArgument for bad options, Error for
  /// a bad artifact, a missing device or a failed warm-up.
  Segmenter(const std::string& artifact_path, const Options& options = Options());
  ~Segmenter();
  Segmenter(Segmenter&&) noexcept;
  Segmenter& operator=(Segmenter&&) noexcept;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  /// Segments uint8 RGB images [H,W,3] or [B,H,W,3] (any non-negative strides) into labels
  /// [H,W] or [B,H,W]. Batches bigger than max_batch are split, partial ones padded.
  Result segment(const TensorView& images);

  /// Same, writing into the caller's contiguous uint8 buffer of `labels_size` bytes, which
  /// must hold exactly B*H*W labels.
  void segment(const TensorView& images, uint8_t* labels, int64_t labels_size);

  /// Segments images of any sizes (each [H,W,3]); results keep the input order. Images of
  /// the same size are batched together. `labels[i]` must hold H_i*W_i bytes.
  void segment(const std::vector<TensorView>& images, const std::vector<uint8_t*>& labels);

  /// Returns float32 logits [B,C,H,W] (or [C,H,W]).
  LogitsResult logits(const TensorView& images);

  /// Same, into the caller's contiguous float buffer of `size` floats (B*C*H*W).
  void logits(const TensorView& images, float* logits, int64_t size);

  /// Device-memory call (CUDA engines): `images` views uint8 [H,W,3]/[B,H,W,3] memory on the
  /// engine's device, `labels` is a contiguous buffer of B*H*W bytes on it; nothing goes
  /// through the host. Stream-ordered like a torch op: the work runs after what `stream` (a
  /// cudaStream_t; nullptr = the legacy default stream) has queued, work queued on `stream`
  /// afterwards sees the labels, and the call returns once the work is queued. Keep `images`
  /// and `labels` alive until `stream` has passed this point. Its latency is not in
  /// stats().buckets (time it with events on `stream`); its calls and runs are counted.
  void segment_on_device(const TensorView& images, uint8_t* labels, int64_t labels_size, void* stream);

  /// Same for float32 logits [B,C,H,W] into a device buffer of `size` floats.
  void logits_on_device(const TensorView& images, float* logits, int64_t size, void* stream);

  /// Every preallocated buffer with its bytes.
  Plan plan() const;
  /// Counters and per-bucket latency.
  Stats stats() const;
  /// The artifact's validated metadata.
  const Metadata& metadata() const;
  /// The options it was built with (after resolution, e.g. runtime "auto" -> chosen).
  const Options& options() const;
  /// The artifact path.
  const std::string& path() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// N independent Segmenters on the same artifact and options; each call runs on an idle one
/// (blocking while all are busy; a CUDA engine takes two calls at once, so that one stages
/// its images while the other's copies and replay run). Thread-safe.
class SegmenterPool {
 public:
  /// `size` engines; with options.threads unset (0) each gets cores / size intra-op threads.
  SegmenterPool(const std::string& artifact_path, const Options& options, int size);
  ~SegmenterPool();
  SegmenterPool(const SegmenterPool&) = delete;
  SegmenterPool& operator=(const SegmenterPool&) = delete;

  Result segment(const TensorView& images);
  void segment(const TensorView& images, uint8_t* labels, int64_t labels_size);
  void segment(const std::vector<TensorView>& images, const std::vector<uint8_t*>& labels);
  LogitsResult logits(const TensorView& images);
  void logits(const TensorView& images, float* logits, int64_t size);
  void segment_on_device(const TensorView& images, uint8_t* labels, int64_t labels_size, void* stream);
  void logits_on_device(const TensorView& images, float* logits, int64_t size, void* stream);

  int size() const;
  Segmenter& engine(int index);
  const Metadata& metadata() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ifa_rt
