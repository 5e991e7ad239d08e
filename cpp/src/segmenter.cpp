// Segmenter: validation, batching, locking and stats around an Engine (no torch here).
#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <map>
#include <mutex>

#include "alloc_counter.h"
#include "artifact.h"
#include "call_checks.h"
#include "engine.h"
#include "heap_trim.h"
#include "in_flight.h"
#include "latency_ring.h"
#include "options.h"
#include "package.h"
#include "plan.h"

namespace ifa_rt {
namespace {

using detail::bad_input;
using detail::hxw;
using detail::ImageRef;
using detail::InFlight;
using detail::LatencyRing;
using detail::Output;
using detail::Started;
using Clock = std::chrono::steady_clock;

// Distinct unplanned sizes counted towards learning at once.
constexpr size_t kMaxUnplannedSeen = 64;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Where a call's images and outputs live: host memory (the default), or memory on the CUDA
// engine's device, ordered on the caller's stream.
struct Memory {
  bool device = false;
  void* stream = nullptr;  // cudaStream_t of a device call
};

std::string memory_name(int device) {
  return device == detail::kHostMemory ? "host memory" : "memory on cuda:" + std::to_string(device);
}

}  // namespace

struct Segmenter::Impl {
  std::string path;
  Options options;
  Metadata metadata;
  std::unique_ptr<detail::Engine> engine;
  std::vector<Bucket> buckets;
  std::vector<int64_t> batches;
  std::vector<Shape> shapes;            // planned: options.shapes, then the learned ones
  int64_t engine_max_batch = 1;         // the batch the engine plans (1 when batch-invariant)
  std::map<Shape, int> unplanned_seen;  // unplanned calls per size, while learning (bounded)
  bool can_learn = true;
  detail::HeapTrimmer heap;  // Options::trim_heap_mb
  std::mutex mutex;
  int64_t calls = 0, images = 0, bucket_runs = 0, padded = 0, fallback = 0;
  std::vector<LatencyRing> latency;
  double construction_ms = 0;
  // The CUDA engine's device index; -1 for CPU and AOTInductor engines. CUDA pads a remainder
  // up to a captured bucket; CPU splits it (plan.h).
  int cuda_device = -1;

  int shape_index(int64_t h, int64_t w) const {
    for (size_t i = 0; i < shapes.size(); ++i)
      if (shapes[i].height == h && shapes[i].width == w) return static_cast<int>(i);
    return -1;
  }

  int learned_count() const { return static_cast<int>(shapes.size() - options.shapes.size()); }

  // An unplanned size met kLearnAfter times gets buckets (Options::learn_shapes; mutex held).
  // Returns its shape index, or -1 while it stays unplanned.
  int learn(int64_t h, int64_t w) {
    if (!can_learn || learned_count() >= options.learn_shapes) return -1;
    // A stream of distinct sizes must not grow this map: it restarts when full.
    if (unplanned_seen.size() >= kMaxUnplannedSeen && !unplanned_seen.count({h, w})) unplanned_seen.clear();
    if (++unplanned_seen[{h, w}] < kLearnAfter) return -1;
    unplanned_seen.erase({h, w});
    try {
      can_learn = engine->add_shape({h, w});
    } catch (const std::exception&) {
      return -1;  // the unplanned path runs it and reports what is wrong with it
    }
    if (!can_learn) return -1;
    shapes.push_back({h, w});
    for (const Bucket& b : detail::make_buckets({{h, w}}, engine_max_batch)) buckets.push_back(b);
    latency.resize(buckets.size());
    return static_cast<int>(shapes.size()) - 1;
  }

  void check_planned(const std::string& where, const std::string& name, int64_t h, int64_t w) const {
    if (!options.strict || shape_index(h, w) >= 0) return;
    std::string planned;
    for (const Shape& s : options.shapes) planned += (planned.empty() ? "" : ", ") + hxw(s.height, s.width);
    bad_input(where, name,
              "a planned shape (" + (planned.empty() ? std::string("none planned") : planned) + ") in strict mode",
              hxw(h, w));
  }

  // Serves n same-shaped images (mutex held): planned buckets, else the unplanned path. Runs
  // the engine leaves pending go to `started`, for finish() once the mutex is released.
  void serve(const ImageRef* ims, int64_t n, Output what, void* const* outs, const Memory& memory, InFlight* started) {
    int si = shape_index(ims[0].height, ims[0].width);
    if (si < 0 && !memory.device && cuda_device < 0) si = learn(ims[0].height, ims[0].width);
    // Unplanned: runs of up to max_batch images, a remainder in one run (no bucket to fit).
    for (const detail::Run& run : detail::schedule(n, batches, cuda_device >= 0 || si < 0)) {
      if (memory.device) {  // queued, not finished: no host latency to record
        const size_t bi = si < 0 ? detail::kUnplanned : bucket_index(si, run.batch);
        const bool planned = engine->run_device(bi, ims + run.first, run.count, what, outs + run.first, memory.stream);
        ++(planned ? bucket_runs : fallback);
        if (planned) padded += run.batch - run.count;
        continue;
      }
      auto t0 = Clock::now();
      if (si < 0) {
        engine->run_unplanned(ims + run.first, run.count, what, outs + run.first);
        ++fallback;
        heap.after_unplanned();
        continue;
      }
      const size_t bi = bucket_index(si, run.batch);
      // At most two runs of one call in flight: the engine has two staging slots per shape,
      // so a third would wait for a slot only this thread can free.
      if (started->full()) {
        Started oldest = started->pop_oldest();
        oldest.run->finish();
        latency[oldest.bucket].push(ms_since(oldest.t0));
      }
      std::unique_ptr<detail::PendingRun> pending;
      if (engine->start(bi, ims + run.first, run.count, what, outs + run.first, &pending)) {
        ++bucket_runs;
        padded += run.batch - run.count;
        if (pending)
          started->push({std::move(pending), bi, t0});
        else
          latency[bi].push(ms_since(t0));
      } else {
        ++fallback;
      }
    }
  }

  // Finishes started runs without the mutex, so that another call can stage and queue its
  // runs meanwhile. Every run is finished (freeing its slot) before the mutex is taken again
  // to record latencies: a thread holding the mutex may be waiting for one of those slots.
  void finish(InFlight& started) {
    std::exception_ptr error;
    std::array<std::pair<size_t, double>, InFlight::kMax> times;
    size_t timed = 0;
    for (Started& s : started) {
      try {
        s.run->finish();
        times[timed++] = {s.bucket, ms_since(s.t0)};
      } catch (...) {
        if (!error) error = std::current_exception();
      }
      s.run.reset();
    }
    if (timed > 0) {
      std::lock_guard<std::mutex> lock(mutex);
      for (size_t i = 0; i < timed; ++i) latency[times[i].first].push(times[i].second);
    }
    if (error) std::rethrow_exception(error);
  }

  size_t bucket_index(int shape, int64_t batch) const {
    return static_cast<size_t>(shape) * batches.size() +
           static_cast<size_t>(std::find(batches.begin(), batches.end(), batch) - batches.begin());
  }

  // Device calls need device memory on the CUDA engine's device; host calls on the CUDA engine
  // need host memory (a device pointer there would be read by the CPU and crash the process).
  void check_memory(const std::string& where, const std::string& in_name, const void* in, const std::string& out_name,
                    const void* out, const Memory& memory) const {
    if (memory.device && cuda_device < 0)
      throw InvalidArgument(where + ": option 'device': expected a CUDA device (device-memory calls run on the " +
                            "CUDA engine), got '" + options.device + "'");
    if (cuda_device < 0) return;
    const int want = memory.device ? cuda_device : detail::kHostMemory;
    const std::string hint = memory.device ? "" : " (device memory goes to " + where + "_on_device)";
    const int got_in = engine->memory_device(in);
    if (got_in != want && got_in != detail::kManagedMemory)
      bad_input(where, in_name, memory_name(want) + hint, memory_name(got_in));
    const int got_out = engine->memory_device(out);
    if (got_out != want && got_out != detail::kManagedMemory)
      throw InvalidArgument(where + ": output '" + out_name + "': expected " + memory_name(want) + hint + ", got " +
                            memory_name(got_out));
  }

  int64_t per_image(Output what, int64_t h, int64_t w) const {
    return what == Output::labels ? h * w : metadata.num_classes * h * w;
  }

  // One [H,W,3] / [B,H,W,3] view into a caller buffer of `size` elements.
  void call(const TensorView& v, Output what, void* dst, int64_t size, const std::string& where,
            const Memory& memory = {}) {
    std::vector<ImageRef> ims;
    detail::collect_images(v, where, true, metadata.min_size, &ims);
    const int64_t h = ims[0].height, w = ims[0].width, n = static_cast<int64_t>(ims.size());
    const int64_t need = n * per_image(what, h, w);
    const std::string out_name = what == Output::labels ? "labels" : "logits";
    if (dst == nullptr || size != need)
      throw InvalidArgument(where + ": output '" + out_name + "': expected " + std::to_string(need) +
                            (what == Output::labels ? " uint8 elements" : " float32 elements") + ", got " +
                            (dst == nullptr ? std::string("a null pointer") : std::to_string(size)));
    check_planned(where, "images", h, w);
    check_memory(where, "images", v.data, out_name, dst, memory);
    const size_t elem = what == Output::labels ? 1 : sizeof(float);
    std::vector<void*> outs(ims.size());
    for (int64_t i = 0; i < n; ++i)
      outs[i] = static_cast<uint8_t*>(dst) + static_cast<size_t>(i * per_image(what, h, w)) * elem;
    InFlight started;
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++calls;
      images += n;
      serve(ims.data(), n, what, outs.data(), memory, &started);
    }
    finish(started);
  }
};

Segmenter::Segmenter(const std::string& artifact_path, const Options& options) : impl_(std::make_unique<Impl>()) {
  auto t0 = Clock::now();
  options.validate();
  // Batch-invariant: the engine plans batch 1 only and every image runs alone (Options).
  Options planned = options;
  if (options.batch_invariant) planned.max_batch = 1;
  detail::check_plan_memory(planned);
  impl_->path = artifact_path;
  impl_->options = planned;
  const detail::DeviceSpec device = detail::parse_device(options.device);
  if (detail::is_package_path(artifact_path)) {
    impl_->engine = detail::make_aoti_engine(artifact_path, planned, &impl_->metadata, &impl_->options);
  } else if (device.cuda) {
    impl_->engine = detail::make_cuda_engine(artifact_path, planned, &impl_->metadata);
  } else {
    impl_->engine = detail::make_cpu_engine(artifact_path, planned, &impl_->metadata, &impl_->options);
  }
  // The engine may resolve the plan (an AOTInductor package without shapes plans its own).
  impl_->shapes = impl_->options.shapes;
  impl_->engine_max_batch = impl_->options.max_batch;
  impl_->buckets = detail::make_buckets(impl_->options.shapes, impl_->options.max_batch);
  impl_->batches = detail::bucket_batches(impl_->options.max_batch);
  impl_->latency.resize(impl_->buckets.size());
  // A call (and a Batcher batch) is still bounded by the caller's max_batch.
  if (options.batch_invariant) impl_->options.max_batch = options.max_batch;
  if (device.cuda) impl_->cuda_device = device.index;
  detail::fix_mmap_threshold(options.mmap_threshold_kb);
  impl_->heap = detail::HeapTrimmer(options.trim_heap_mb);
  impl_->construction_ms = ms_since(t0);
}

Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

Result Segmenter::segment(const TensorView& images) {
  auto t0 = Clock::now();
  // Validate before sizing the result from the shape: a huge (e.g. zero-stride) view must be
  // rejected, not first allocate and zero-fill gigabytes.
  {
    std::vector<ImageRef> check;
    detail::collect_images(images, "Segmenter.segment", true, impl_->metadata.min_size, &check);
  }
  Result r;
  const size_t rank = images.shape.size();
  if (rank >= 3) {
    r.shape.assign(images.shape.begin(), images.shape.end() - 1);
    int64_t n = 1;
    for (int64_t d : r.shape) n *= std::max<int64_t>(d, 0);
    r.labels.resize(static_cast<size_t>(n));
  }
  impl_->call(images, Output::labels, r.labels.data(), static_cast<int64_t>(r.labels.size()), "Segmenter.segment");
  r.milliseconds = ms_since(t0);
  return r;
}

void Segmenter::segment(const TensorView& images, uint8_t* labels, int64_t labels_size) {
  impl_->call(images, Output::labels, labels, labels_size, "Segmenter.segment");
}

void Segmenter::segment(const std::vector<TensorView>& images, const std::vector<uint8_t*>& labels) {
  const std::string where = "Segmenter.segment";
  if (labels.size() != images.size())
    throw InvalidArgument(where + ": output 'labels': expected " + std::to_string(images.size()) +
                          " buffers (one per image), got " + std::to_string(labels.size()));
  std::vector<ImageRef> ims;
  for (const TensorView& v : images) detail::collect_images(v, where, false, impl_->metadata.min_size, &ims);
  // Group by shape, in order of first appearance; each group keeps input order.
  std::vector<std::pair<Shape, std::vector<size_t>>> groups;
  for (size_t i = 0; i < ims.size(); ++i) {
    if (labels[i] == nullptr)
      throw InvalidArgument(where + ": output 'labels[" + std::to_string(i) +
                            "]': expected a buffer, got a null pointer");
    Shape s{ims[i].height, ims[i].width};
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == s; });
    if (it == groups.end())
      groups.push_back({s, {i}});
    else
      it->second.push_back(i);
  }
  for (const auto& g : groups)
    impl_->check_planned(where, "images[" + std::to_string(g.second[0]) + "]", g.first.height, g.first.width);
  for (size_t i = 0; impl_->cuda_device >= 0 && i < ims.size(); ++i) {
    const std::string k = "[" + std::to_string(i) + "]";
    impl_->check_memory(where, "images" + k, ims[i].data, "labels" + k, labels[i], {});
  }
  InFlight started;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    ++impl_->calls;
    impl_->images += static_cast<int64_t>(ims.size());
    for (const auto& g : groups) {
      std::vector<ImageRef> part;
      std::vector<void*> outs;
      for (size_t i : g.second) {
        part.push_back(ims[i]);
        outs.push_back(labels[i]);
      }
      impl_->serve(part.data(), static_cast<int64_t>(part.size()), Output::labels, outs.data(), {}, &started);
    }
  }
  impl_->finish(started);
}

LogitsResult Segmenter::logits(const TensorView& images) {
  auto t0 = Clock::now();
  // Validate before sizing the result from the shape (see segment).
  {
    std::vector<ImageRef> check;
    detail::collect_images(images, "Segmenter.logits", true, impl_->metadata.min_size, &check);
  }
  LogitsResult r;
  const size_t rank = images.shape.size();
  if (rank >= 3) {
    r.shape.assign(images.shape.begin(), images.shape.end() - 1);
    r.shape.insert(r.shape.end() - 2, impl_->metadata.num_classes);
    int64_t n = 1;
    for (int64_t d : r.shape) n *= std::max<int64_t>(d, 0);
    r.logits.resize(static_cast<size_t>(n));
  }
  impl_->call(images, Output::logits, r.logits.data(), static_cast<int64_t>(r.logits.size()), "Segmenter.logits");
  r.milliseconds = ms_since(t0);
  return r;
}

void Segmenter::logits(const TensorView& images, float* logits, int64_t size) {
  impl_->call(images, Output::logits, logits, size, "Segmenter.logits");
}

void Segmenter::segment_on_device(const TensorView& images, uint8_t* labels, int64_t labels_size, void* stream) {
  impl_->call(images, Output::labels, labels, labels_size, "Segmenter.segment_on_device", Memory{true, stream});
}

void Segmenter::logits_on_device(const TensorView& images, float* logits, int64_t size, void* stream) {
  impl_->call(images, Output::logits, logits, size, "Segmenter.logits_on_device", Memory{true, stream});
}

Plan Segmenter::plan() const { return impl_->engine->plan(); }

Stats Segmenter::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  Stats s;
  s.calls = impl_->calls;
  s.images = impl_->images;
  s.bucket_runs = impl_->bucket_runs;
  s.padded_images = impl_->padded;
  s.fallback_calls = impl_->fallback;
  const detail::AllocCounters c = impl_->engine->counters();
  s.allocations_after_warmup = c.new_blocks;
  s.bytes_allocated_after_warmup = c.new_bytes;
  s.cached_allocations_after_warmup = c.cached_hits;
  s.unattributed_allocations_in_calls = detail::unattributed_allocations_in_calls();
  s.arena_bytes = c.cached_bytes;
  s.arena_blocks = c.cached_blocks;
  s.arena_peak_live_bytes = c.peak_live_bytes;
  s.shape_cache = impl_->options.shape_cache;
  s.learned_shapes.assign(impl_->shapes.begin() + static_cast<std::ptrdiff_t>(impl_->options.shapes.size()),
                          impl_->shapes.end());
  s.heap_trims = impl_->heap.trims();
  s.construction_ms = impl_->construction_ms;
  s.first_call_ms = impl_->engine->first_call_ms();
  for (size_t i = 0; i < impl_->buckets.size(); ++i) s.buckets.push_back(impl_->latency[i].summary(impl_->buckets[i]));
  return s;
}

const Metadata& Segmenter::metadata() const { return impl_->metadata; }
const Options& Segmenter::options() const { return impl_->options; }
const std::string& Segmenter::path() const { return impl_->path; }

}  // namespace ifa_rt
