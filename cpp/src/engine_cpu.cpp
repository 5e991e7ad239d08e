// The CPU engine: a frozen TorchScript module run by Static Runtime (or the JIT), with
// preallocated per-bucket input buffers and a block cache that holds every intermediate.
//
// Construction:
//   1. load + validate the artifact; cast to the precision (the graph follows `mean`); freeze
//      `forward` and `logits` each into its own fully inlined module (weights shared);
//      optionally optimize_for_inference;
//   2. runtime "static": build Static Runtime modules for them (`logits` only when planned);
//      "auto" = "jit" + optimize_for_inference (measured fastest, smallest plan);
//   3. allocate one uint8 [B,H,W,3] input buffer per bucket;
//   4. warm up: every bucket `warmup` times inside the engine's BlockCache scope, then whole
//      passes over all buckets until a pass takes no new block (at most 4 passes); free the
//      cached blocks that last pass did not use (first-call leftovers).
// A steady-state call then reuses the input buffer and cached blocks: stats() counts misses.
#include <torch/csrc/jit/runtime/static/impl.h>
#include <torch/script.h>

#include <chrono>
#include <cstring>

#include "alloc_counter.h"
#include "artifact.h"
#include "engine.h"
#include "options.h"
#include "plan.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string first_line(const std::string& what) {
  auto end = what.find('\n');
  return end == std::string::npos ? what : what.substr(0, end);
}

// The line of an error that says what went wrong: the TorchScript interpreter puts a
// traceback first and the original error ("RuntimeError: ...") last.
std::string error_summary(const std::string& what) {
  if (what.rfind("The following operation failed in the TorchScript interpreter", 0) != 0)
    return first_line(what);
  const size_t end = what.find_last_not_of("\n ");
  if (end == std::string::npos) return first_line(what);
  const size_t nl = what.rfind('\n', end);
  const size_t begin = nl == std::string::npos ? 0 : nl + 1;
  return what.substr(begin, end + 1 - begin);
}

at::ScalarType scalar_type(Precision p) {
  switch (p) {
    case Precision::fp16: return at::kHalf;
    case Precision::bf16: return at::kBFloat16;
    default: return at::kFloat;
  }
}

// n images are consecutive C-contiguous [H,W,3] blocks of one array.
bool consecutive(const ImageRef* images, int64_t n) {
  const int64_t step = images[0].height * images[0].width * 3;
  for (int64_t i = 0; i < n; ++i)
    if (!images[i].contiguous() || images[i].data != images[0].data + i * step) return false;
  return true;
}

at::Tensor image_tensor(const ImageRef& im) {
  return at::from_blob(const_cast<uint8_t*>(im.data), {im.height, im.width, 3},
                       {im.stride_h, im.stride_w, im.stride_c}, at::TensorOptions(at::kByte));
}

// Copies image i of a [B,...] result into outs[i] (contiguous uint8 labels or float32
// logits), converting dtype and layout on the way (results may be channels-last): no
// intermediate tensor is allocated.
void copy_out(const at::Tensor& result, int64_t n, Output what, void* const* outs) {
  const auto dtype = what == Output::labels ? at::kByte : at::kFloat;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor src = result.select(0, i);
    at::from_blob(outs[i], src.sizes(), at::TensorOptions(dtype)).copy_(src);
  }
}

// Checks a result against the contract (docs/artifact.md) for a batch x height x width input.
void check_result(const at::Tensor& t, Output what, int64_t b, int64_t h, int64_t w, int64_t c) {
  const bool labels = what == Output::labels;
  std::vector<int64_t> want = labels ? std::vector<int64_t>{b, h, w} : std::vector<int64_t>{b, c, h, w};
  if (t.sizes().vec() != want || (labels && t.scalar_type() != at::kByte) ||
      (!labels && !at::isFloatingType(t.scalar_type())))
    throw Error(std::string(labels ? "forward" : "logits") + ": expected " +
                (labels ? "uint8 " : "float32 ") + shape_string(want) + ", got " +
                std::string(c10::getDtypeNames(t.scalar_type()).first) + " " + shape_string(t.sizes().vec()));
}

class CpuEngine final : public Engine {
 public:
  CpuEngine(const std::string& path, const Options& options, Metadata* metadata)
      : options_(options) {
    // "auto" is the configuration measured fastest (cpp/README.md): the frozen JIT module on
    // an optimize_for_inference graph. Static Runtime was no faster and planned 2x the memory.
    if (options_.runtime == "auto") {
      options_.runtime = "jit";
      options_.optimize = true;
    }
    torch::jit::Module module = load_artifact(path, metadata);
    check_plan(options_, *metadata);
    num_classes_ = metadata->num_classes;
    TorchScope scope(options_.threads);
    for (const auto& p : module.parameters()) weight_bytes_ += static_cast<int64_t>(p.nbytes());
    for (const auto& b : module.buffers()) weight_bytes_ += static_cast<int64_t>(b.nbytes());
    try {
      if (options_.precision != Precision::fp32) module.to(scalar_type(options_.precision));
      forward_ = freeze_method(module, "forward");
      logits_ = freeze_method(module, "logits");
      if (options_.optimize) {
        forward_ = torch::jit::optimize_for_inference(forward_);
        logits_ = torch::jit::optimize_for_inference(logits_);
      }
    } catch (const c10::Error& e) {
      throw Error("Segmenter: failed to prepare artifact '" + path + "' (freeze/optimize): " +
                  first_line(e.what_without_backtrace()));
    } catch (const std::exception& e) {  // e.g. a torch::jit::ErrorReport from compilation
      throw Error("Segmenter: failed to prepare artifact '" + path + "' (freeze/optimize): " +
                  error_summary(e.what()));
    }
    if (options_.runtime == "static") build_static_runtime();

    buckets_ = make_buckets(options_.shapes, options_.max_batch);
    for (const Bucket& b : buckets_)
      inputs_.push_back(at::zeros({b.batch, b.height, b.width, 3}, at::kByte));
    runtime_ = use_static_ ? "static-runtime" : "jit";
    if (options_.optimize) runtime_ += "+optimize_for_inference";
    warm_up();
  }

  Plan plan() const override {
    Plan p;
    p.device = "cpu";
    p.precision = options_.precision;
    p.runtime = runtime_;
    p.buckets = buckets_;
    for (size_t i = 0; i < buckets_.size(); ++i)
      p.buffers.push_back({"input " + buckets_[i].name() + "x3", "cpu", "uint8",
                           inputs_[i].sizes().vec(), static_cast<int64_t>(inputs_[i].nbytes())});
    p.buffers.push_back({"block cache (intermediates and outputs after warm-up)", "cpu", "mixed",
                         {}, cache_.counters().held_bytes});
    p.buffers.push_back({"weights (frozen constants, before freezing)", "cpu",
                         to_string(options_.precision), {}, weight_bytes_});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what,
           void* const* outs) override {
    if (what == Output::logits && !options_.plan_logits) {
      run_unplanned(images, n, what, outs);
      return false;
    }
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    const Bucket& b = buckets_[bucket];
    at::Tensor input;
    if (n == b.batch && consecutive(images, n)) {
      // Zero copy: the caller's contiguous batch is the graph input.
      input = at::from_blob(const_cast<uint8_t*>(images[0].data), {b.batch, b.height, b.width, 3},
                            at::TensorOptions(at::kByte));
    } else {
      input = inputs_[bucket];
      for (int64_t i = 0; i < n; ++i) input.select(0, i).copy_(image_tensor(images[i]));
    }
    at::Tensor out = execute(input, what, /*planned=*/true);
    // Checked on every run, not only at warm-up: copy_out writes the result's extent into
    // caller buffers sized from the metadata, so a graph whose output shape depends on the
    // data would otherwise overflow them (found by tests/test_reliability_artifacts.py).
    check_result(out, what, b.batch, b.height, b.width, num_classes_);
    copy_out(out, n, what, outs);
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    TorchScope scope(options_.threads);
    const int64_t h = images[0].height, w = images[0].width;
    at::Tensor input;
    if (consecutive(images, n)) {
      input = at::from_blob(const_cast<uint8_t*>(images[0].data), {n, h, w, 3}, at::TensorOptions(at::kByte));
    } else {
      input = at::empty({n, h, w, 3}, at::kByte);
      for (int64_t i = 0; i < n; ++i) input.select(0, i).copy_(image_tensor(images[i]));
    }
    at::Tensor out = execute(input, what, /*planned=*/false);
    check_result(out, what, n, h, w, num_classes_);
    copy_out(out, n, what, outs);
  }

  AllocCounters counters() const override {
    auto c = cache_.counters();
    return {c.misses - warm_.misses, c.miss_bytes - warm_.miss_bytes, c.hits - warm_.hits, c.held_bytes};
  }

  double first_call_ms() const override { return first_call_ms_; }

  const Options& options() const { return options_; }

 private:
  // Runs the graph; the unplanned path always uses the JIT (Static Runtime would grow its
  // arena to the new shape and make the next planned call allocate).
  at::Tensor execute(const at::Tensor& input, Output what, bool planned) {
    try {
      std::vector<c10::IValue> args{input};
      if (what == Output::labels) {
        if (planned && use_static_) return (*sr_forward_)(std::move(args)).toTensor();
        return forward_.forward(std::move(args)).toTensor();
      }
      if (planned && use_static_ && sr_logits_) return (*sr_logits_)(std::move(args)).toTensor();
      return logits_.forward(std::move(args)).toTensor();
    } catch (const c10::Error& e) {
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") +
                  " failed on input " + shape_string(input.sizes().vec()) + ": " +
                  error_summary(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      // The interpreter rethrows errors raised inside the graph as torch::jit::JITException
      // (a std::runtime_error, not a c10::Error): still an ifa_rt::Error with context.
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") +
                  " failed on input " + shape_string(input.sizes().vec()) + ": " +
                  error_summary(e.what()));
    }
  }

  void build_static_runtime() {
    try {
      // Static Runtime rewrites the method graph it is given: hand it a clone (own types and
      // graphs) so the JIT modules used for the fallback path stay intact.
      torch::jit::StaticModuleOptions sr_options;  // out variants + memory planner on
      sr_forward_ = std::make_unique<torch::jit::StaticModule>(forward_.clone(), /*is_frozen=*/true, sr_options);
      if (options_.plan_logits)
        sr_logits_ = std::make_unique<torch::jit::StaticModule>(logits_.clone(), /*is_frozen=*/true, sr_options);
      use_static_ = true;
    } catch (const std::exception& e) {
      throw Error("Segmenter: option 'runtime': expected a graph Static Runtime can run, got: " +
                  first_line(e.what()));
    }
  }

  void warm_up() {
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    for (size_t i = 0; i < buckets_.size(); ++i) {
      const Bucket& b = buckets_[i];
      inputs_[i].copy_(at::randint(0, 256, inputs_[i].sizes(), at::TensorOptions(at::kByte)));
      for (int k = 0; k < options_.warmup; ++k) {
        auto t0 = Clock::now();
        at::Tensor out;
        try {
          out = execute(inputs_[i], Output::labels, true);
          check_result(out, Output::labels, b.batch, b.height, b.width, num_classes_);
          copy_out(out, b.batch, Output::labels, scratch_outs(b, Output::labels).data());
          if (options_.plan_logits) {
            at::Tensor l = execute(inputs_[i], Output::logits, true);
            check_result(l, Output::logits, b.batch, b.height, b.width, num_classes_);
            copy_out(l, b.batch, Output::logits, scratch_outs(b, Output::logits).data());
          }
        } catch (const Error& e) {
          throw Error("Segmenter: warm-up of bucket " + b.name() + " failed: " + e.what());
        }
        if (i == 0 && k == 0) first_call_ms_ = ms_since(t0);
      }
    }
    // Steady state: a whole pass over the buckets takes no new block.
    for (int pass = 0; pass < 4; ++pass) {
      cache_.next_epoch();
      const int64_t before = cache_.counters().misses;
      for (size_t i = 0; i < buckets_.size(); ++i) {
        const Bucket& b = buckets_[i];
        copy_out(execute(inputs_[i], Output::labels, true), b.batch, Output::labels,
                 scratch_outs(b, Output::labels).data());
        if (options_.plan_logits)
          copy_out(execute(inputs_[i], Output::logits, true), b.batch, Output::logits,
                   scratch_outs(b, Output::logits).data());
      }
      if (cache_.counters().misses == before) break;
    }
    trimmed_bytes_ = cache_.trim();  // what only the first calls needed
    warm_ = cache_.counters();
    std::vector<uint8_t>().swap(scratch_);
  }

  // Output pointers into a warm-up scratch buffer (std::vector: not the c10 allocator).
  std::vector<void*> scratch_outs(const Bucket& b, Output what) {
    const int64_t per_image = what == Output::labels ? b.height * b.width
                                                     : num_classes_ * b.height * b.width * 4;
    scratch_.resize(static_cast<size_t>(per_image * b.batch));
    std::vector<void*> outs;
    for (int64_t i = 0; i < b.batch; ++i) outs.push_back(scratch_.data() + i * per_image);
    return outs;
  }

  Options options_;
  int64_t num_classes_ = 0;
  int64_t weight_bytes_ = 0;
  torch::jit::Module forward_, logits_;  // frozen
  std::unique_ptr<torch::jit::StaticModule> sr_forward_, sr_logits_;
  bool use_static_ = false;
  std::string runtime_;
  std::vector<Bucket> buckets_;
  std::vector<at::Tensor> inputs_;
  BlockCache cache_;
  BlockCache::Counters warm_;
  double first_call_ms_ = 0;
  int64_t trimmed_bytes_ = 0;
  std::vector<uint8_t> scratch_;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const std::string& path, const Options& options,
                                        Metadata* metadata, Options* resolved) {
  auto engine = std::make_unique<CpuEngine>(path, options, metadata);
  *resolved = engine->options();
  return engine;
}

}  // namespace ifa_rt::detail
