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
// A size learned at run time (Options::learn_shapes) goes through steps 3-4 for its buckets.
// A steady-state call then reuses the input buffer and cached blocks: stats() counts misses.
#include <torch/csrc/jit/runtime/static/impl.h>
#include <torch/script.h>

#include <cstring>

#include "alloc_counter.h"
#include "artifact.h"
#include "engine.h"
#include "engine_common.h"
#include "options.h"
#include "plan.h"
#include "torch_scope.h"

namespace ifa_rt::detail {
namespace {

class CpuEngine final : public Engine {
 public:
  CpuEngine(const std::string& path, const Options& options, Metadata* metadata) : options_(options) {
    // "auto" is the configuration measured fastest (cpp/README.md): the frozen JIT module on
    // an optimize_for_inference graph. Static Runtime was no faster and planned 2x the memory.
    if (options_.precision == Precision::int8)
      throw InvalidArgument(
          "Options: 'precision': 'int8' runs from a quantized AOTInductor package (.pt2; "
          "ifa-rt quantize), got the TorchScript artifact '" +
          path + "'");
    if (options_.fuser == "on")
      throw InvalidArgument(
          "Options: 'fuser': expected 'auto' or 'off' on the CPU (TensorExpr fusion runs on CUDA only: "
          "torch's CPU builds have no LLVM), got 'on'");
    if (options_.runtime == "aoti")
      throw InvalidArgument(
          "Options: 'runtime': 'aoti' expects an AOTInductor package (.pt2), got the "
          "TorchScript artifact '" +
          path +
          "' (compile one: ifa_rt.export(..., format='aoti'), "
          "or ifa_rt.Segmenter(artifact, runtime='aoti') compiles and caches it)");
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
      // Artifacts exported before ifa_rt made weights channels-last (deploy/fuse.py) get
      // them here: oneDNN then runs the NHWC input without reordering weights per call.
      if (options_.channels_last)
        for (auto p : module.parameters())
          if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
      configure_cache(module, options_);
      forward_ = freeze_method(module, "forward");
      logits_ = freeze_method(module, "logits");
      if (options_.optimize) {
        forward_ = torch::jit::optimize_for_inference(forward_);
        logits_ = torch::jit::optimize_for_inference(logits_);
      }
    } catch (const c10::Error& e) {
      throw Error("Segmenter: failed to prepare artifact '" + path +
                  "' (freeze/optimize): " + first_line(e.what_without_backtrace()));
    } catch (const std::exception& e) {  // e.g. a torch::jit::ErrorReport from compilation
      throw Error("Segmenter: failed to prepare artifact '" + path + "' (freeze/optimize): " + error_summary(e.what()));
    }
    if (options_.runtime == "static") build_static_runtime();

    runtime_ = use_static_ ? "static-runtime" : "jit";
    if (options_.optimize) runtime_ += "+optimize_for_inference";
    plan_buckets(make_buckets(options_.shapes, options_.max_batch));
    warm_ = warm_up(0);
  }

  bool add_shape(const Shape& shape) override {
    const size_t first = buckets_.size();
    const BlockCache::Counters before = cache_.counters();
    try {
      plan_buckets(make_buckets({shape}, options_.max_batch));
      const BlockCache::Counters after = warm_up(first);
      // What planning took is warm-up, not a steady-state miss.
      warm_.misses += after.misses - before.misses;
      warm_.miss_bytes += after.miss_bytes - before.miss_bytes;
      warm_.hits += after.hits - before.hits;
    } catch (...) {
      buckets_.resize(first);
      inputs_.resize(first);
      throw;
    }
    return true;
  }

  Plan plan() const override {
    Plan p;
    p.device = "cpu";
    p.precision = options_.precision;
    p.runtime = runtime_;
    p.buckets = buckets_;
    for (size_t i = 0; i < buckets_.size(); ++i)
      p.buffers.push_back({"input " + buckets_[i].name() + "x3", "cpu", "uint8", inputs_[i].sizes().vec(),
                           static_cast<int64_t>(inputs_[i].nbytes())});
    arena_info(cache_, &p);
    p.buffers.push_back(
        {"weights (frozen constants, before freezing)", "cpu", to_string(options_.precision), {}, weight_bytes_});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    if (what == Output::logits && !options_.plan_logits) {
      run_unplanned(images, n, what, outs);
      return false;
    }
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    const Bucket& b = buckets_[bucket];
    at::Tensor input = batch_input(images, n, inputs_[bucket]);
    at::Tensor out = execute(input, what, /*planned=*/true);
    // Checked on every run, not only at warm-up: copy_out writes the result's extent into
    // caller buffers sized from the metadata, so a graph whose output shape depends on the
    // data would otherwise overflow them (found by tests/test_reliability_artifacts.py).
    check_result(out, what, b.batch, b.height, b.width, num_classes_);
    copy_out(out, n, what, outs);
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    UnplannedScope unplanned;  // its blocks are its own: never in a planned call's cache
    TorchScope scope(options_.threads);
    const int64_t h = images[0].height, w = images[0].width;
    // Unplanned: a buffer of the call's own size (the view is used when the images allow).
    at::Tensor input = batch_input(images, n, at::empty({n, h, w, 3}, at::kByte));
    at::Tensor out = execute(input, what, /*planned=*/false);
    check_result(out, what, n, h, w, num_classes_);
    copy_out(out, n, what, outs);
  }

  AllocCounters counters() const override { return counters_since(cache_, warm_); }

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
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") + " failed on input " +
                  shape_string(input.sizes().vec()) + ": " + error_summary(e.what_without_backtrace()));
    } catch (const std::exception& e) {
      // The interpreter rethrows errors raised inside the graph as torch::jit::JITException
      // (a std::runtime_error, not a c10::Error): still an ifa_rt::Error with context.
      throw Error(std::string("Segmenter: ") + (what == Output::labels ? "forward" : "logits") + " failed on input " +
                  shape_string(input.sizes().vec()) + ": " + error_summary(e.what()));
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
      throw Error("Segmenter: option 'runtime': expected a graph Static Runtime can run, got: " + first_line(e.what()));
    }
  }

  void plan_buckets(const std::vector<Bucket>& buckets) {
    for (const Bucket& b : buckets) {
      buckets_.push_back(b);
      inputs_.push_back(at::zeros({b.batch, b.height, b.width, 3}, at::kByte));
    }
  }

  // Warms up buckets [first, end) `warmup` times each, then settles the cache over every
  // bucket; returns the counters steady-state counts start from.
  BlockCache::Counters warm_up(size_t first) {
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    for (size_t i = first; i < buckets_.size(); ++i) {
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
    const BlockCache::Counters settled = settle(cache_, [&] {
      for (size_t i = 0; i < buckets_.size(); ++i) {
        const Bucket& b = buckets_[i];
        copy_out(execute(inputs_[i], Output::labels, true), b.batch, Output::labels,
                 scratch_outs(b, Output::labels).data());
        if (options_.plan_logits)
          copy_out(execute(inputs_[i], Output::logits, true), b.batch, Output::logits,
                   scratch_outs(b, Output::logits).data());
      }
    });
    std::vector<uint8_t>().swap(scratch_);
    return settled;
  }

  // Output pointers into a warm-up scratch buffer (std::vector: not the c10 allocator).
  std::vector<void*> scratch_outs(const Bucket& b, Output what) {
    const int64_t per_image = what == Output::labels ? b.height * b.width : num_classes_ * b.height * b.width * 4;
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
  std::vector<uint8_t> scratch_;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const std::string& path, const Options& options, Metadata* metadata,
                                        Options* resolved) {
  auto engine = std::make_unique<CpuEngine>(path, options, metadata);
  *resolved = engine->options();
  return engine;
}

}  // namespace ifa_rt::detail
