// The AOTInductor engine: one compiled model per planned bucket from a `.pt2` package, run
// through LibTorch's AOTIModelPackageLoader, with the CPU engine's memory plan. A package
// compiled for CUDA goes to engine_aoti_cuda.cpp after step 1.
//
// Construction:
//   1. read `extra/ifa_rt.json` from the archive; validate it like an artifact's metadata,
//      then the `aoti` block: device, machine, torch minor version and CPU ISA must match
//      this machine (a package is compiled for one), precision must be the package's;
//   2. resolve the plan: every (batch, shape) bucket of the options must be compiled in the
//      package; no shapes given = the package's shapes and largest batch;
//   3. build the fallback: the package's TorchScript artifact, extracted to a temporary file
//      and loaded as a CPU engine with no buckets; it serves unplanned shapes and logits, so
//      the Segmenter API is the same as for a `.ifa.pt`;
//   4. load one model per bucket (labels, or coarse logits whose upsample and labels the
//      runtime finishes: upsample_labels.h), allocate its uint8 input buffer, and warm up inside the
//      engine's BlockCache like the CPU engine (whole passes until none takes a new block,
//      then trim), so a steady-state call reuses cached blocks: stats() counts misses.
// Sizes learned at run time (Options::learn_shapes) are planned on the fallback; their
// buckets follow the package's (bucket indices past the package's go to the fallback).
#include <ATen/Parallel.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "alloc_counter.h"
#include "aoti_common.h"
#include "artifact.h"
#include "engine.h"
#include "engine_common.h"
#include "ifa_rt/version.h"
#include "options.h"
#include "package.h"
#include "plan.h"
#include "torch_scope.h"
#include "upsample_labels.h"
#include "zip_check.h"

namespace ifa_rt::detail {
namespace {

std::string read_record(caffe2::serialize::PyTorchStreamReader& reader, const std::string& name) {
  auto [data, size] = reader.getRecord(name);
  return std::string(static_cast<const char*>(data.get()), size);
}

// A temporary file removed when this goes out of scope.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    // $TMPDIR first, as every tool on the system does; /tmp where it is unset.
    const char* dir = std::getenv("TMPDIR");
    std::string name = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/ifa_rt_fallback_XXXXXX.ifa.pt";
    const int fd = mkstemps(name.data(), 7);
    if (fd < 0)
      throw Error("Segmenter: cannot create a temporary file for the package's fallback artifact in '" +
                  name.substr(0, name.rfind('/')) + "' (TMPDIR)");
    close(fd);
    path_ = name;
    std::ofstream out(path_, std::ios::binary);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (!out) throw Error("Segmenter: cannot write the package's fallback artifact to " + path_);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Step 1: the package's metadata and fallback bytes, and whether it can run here.
PackageContents read_package(const std::string& path, const Options& options, Metadata* metadata) {
  const std::string where = "failed to load package '" + path + "': ";
  if (options.runtime != "auto" && options.runtime != "aoti")
    throw InvalidArgument("Options: 'runtime': expected 'auto' or 'aoti' for an AOTInductor package (.pt2), got '" +
                          options.runtime + "'");
  PackageContents contents;
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(where + "no such file or not readable");
  }
  try {
    try {
      check_zip(path);  // bounds and CRCs first: LibTorch trusts every length it reads
    } catch (const Error& e) {
      throw Error(where + "not a readable PT2 archive: " + e.what());
    }
    caffe2::serialize::PyTorchStreamReader reader(path);
    const std::string meta_record = std::string("extra/") + kMetadataFile;
    if (!reader.hasRecord(meta_record))
      throw Error(where + "metadata '" + kMetadataFile + "': expected an extra file (an ifa_rt package), got none");
    const std::string json = read_record(reader, meta_record);
    *metadata = parse_metadata(json);
    contents.info = parse_package_info(json);
    if (!reader.hasRecord(contents.info.fallback))
      throw Error(where + "expected the fallback artifact '" + contents.info.fallback + "' inside, got none");
    contents.fallback_bytes = read_record(reader, contents.info.fallback);
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(what.rfind(where, 0) == 0 ? what : where + what);
  } catch (const c10::Error& e) {
    throw Error(where + "not a readable PT2 archive: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw Error(where + "not a readable PT2 archive: " + first_line(e.what()));
  }
  const std::string mismatch =
      package_mismatch(contents.info, host_cpu_flags(), host_machine(), ifa_rt::torch_version());
  if (!mismatch.empty())
    throw Error("Segmenter: package '" + path + "' cannot run on this machine: " + mismatch +
                "; compile it here (ifa_rt.Segmenter(artifact, runtime='aoti') or "
                "`ifa-rt export --format aoti`)");
  const bool cuda = parse_device(options.device).cuda;
  if (contents.info.device == "cuda" && !cuda)
    throw InvalidArgument("Options: 'device': expected 'cuda' or 'cuda:N' (this package was compiled for CUDA), got '" +
                          options.device + "'");
  if (contents.info.device == "cpu" && cuda)
    throw InvalidArgument("Options: 'device': expected 'cpu' (this package was compiled for the CPU), got '" +
                          options.device + "'");
  return contents;
}

class AotiEngine final : public Engine {
 public:
  AotiEngine(const std::string& path, const Options& options, Metadata* metadata, const PackageContents& contents)
      : options_(options), package_(contents.info) {
    const std::string where = "failed to load package '" + path + "': ";
    buckets_ = resolve_package_plan(package_, path, &options_);
    check_plan(options_, *metadata);
    num_classes_ = metadata->num_classes;

    Options fallback_options = options_;
    fallback_options.shapes.clear();
    fallback_options.runtime = "auto";
    fallback_options.plan_logits = false;
    fallback_options.precision = Precision::fp32;  // the fallback artifact is fp32 (int8 packages too)
    fallback_ = make_fallback_engine(contents.fallback_bytes, [&](const std::string& file) {
      Metadata fallback_meta;
      Options resolved;
      return make_cpu_engine(file, fallback_options, &fallback_meta, &resolved);
    });
    options_.runtime = "aoti";

    TorchScope scope(options_.threads);
    for (const Bucket& b : buckets_) {
      try {
        models_.push_back(std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, package_model_name(b)));
      } catch (const std::exception& e) {
        throw Error(where + "model '" + package_model_name(b) + "': " + first_line(e.what()));
      }
      inputs_.push_back(at::zeros({b.batch, b.height, b.width, 3}, at::kByte));
    }
    tails_.resize(buckets_.size());
    warm_up();
  }

  Plan plan() const override {
    Plan p;
    p.device = "cpu";
    p.precision = options_.precision;
    p.runtime = "aoti";
    p.buckets = buckets_;
    for (size_t i = 0; i < buckets_.size(); ++i)
      p.buffers.push_back({"input " + buckets_[i].name() + "x3", "cpu", "uint8", inputs_[i].sizes().vec(),
                           static_cast<int64_t>(inputs_[i].nbytes())});
    arena_info(cache_, &p);
    const Plan learned = fallback_->plan();  // sizes learned at run time (TorchScript fp32)
    p.arena_bytes += learned.arena_bytes;
    p.arena_blocks += learned.arena_blocks;
    p.peak_live_bytes = std::max(p.peak_live_bytes, learned.peak_live_bytes);
    for (const Bucket& b : learned.buckets) p.buckets.push_back(b);
    for (const BufferInfo& b : learned.buffers)
      if (b.name.rfind("input ", 0) == 0 || b.bytes > 0)
        p.buffers.push_back({"fallback " + b.name, b.device, b.dtype, b.shape, b.bytes});
    return p;
  }

  bool run(size_t bucket, const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    if (what == Output::logits) {  // the package compiles labels only: logits run on the fallback
      fallback_->run_unplanned(images, n, what, outs);
      return false;
    }
    if (bucket >= buckets_.size()) return fallback_->run(bucket - buckets_.size(), images, n, what, outs);
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    labels_out(bucket, execute(bucket, batch_input(images, n, inputs_[bucket])), n, outs);
    return true;
  }

  void run_unplanned(const ImageRef* images, int64_t n, Output what, void* const* outs) override {
    fallback_->run_unplanned(images, n, what, outs);
  }

  // Learned sizes are planned on the fallback (TorchScript fp32): compiling a package for a
  // size takes a compiler and minutes, planning takes two calls.
  bool add_shape(const Shape& shape) override { return fallback_->add_shape(shape); }

  AllocCounters counters() const override {
    AllocCounters c = counters_since(cache_, warm_);
    const AllocCounters f = fallback_->counters();
    return {c.new_blocks + f.new_blocks,       c.new_bytes + f.new_bytes,
            c.cached_hits + f.cached_hits,     c.cached_bytes + f.cached_bytes,
            c.cached_blocks + f.cached_blocks, std::max(c.peak_live_bytes, f.peak_live_bytes)};
  }

  double first_call_ms() const override { return first_call_ms_; }

  const Options& options() const { return options_; }

 private:
  // Writes the labels of the first n images of a bucket's result into outs: copied, or
  // finished from coarse logits (upsample + first maximum, upsample_labels.h).
  void labels_out(size_t bucket, const at::Tensor& out, int64_t n, void* const* outs) {
    const Bucket& b = buckets_[bucket];
    if (package_.output == "labels") {
      check_result(out, Output::labels, b.batch, b.height, b.width, num_classes_);
      copy_out(out, n, Output::labels, outs);
      return;
    }
    if (out.dim() != 4 || out.size(0) != b.batch || out.size(1) != num_classes_ || out.scalar_type() != at::kFloat)
      throw Error("Segmenter: forward: expected coarse logits float32 [" + std::to_string(b.batch) + "," +
                  std::to_string(num_classes_) + ",h,w], got " + std::string(c10::toString(out.scalar_type())) + " " +
                  shape_string(out.sizes().vec()));
    const at::Tensor coarse = out.contiguous();
    std::unique_ptr<UpsampleLabels>& tail = tails_[bucket];
    if (!tail || tail->height() != coarse.size(2) || tail->width() != coarse.size(3))
      tail = std::make_unique<UpsampleLabels>(num_classes_, coarse.size(2), coarse.size(3), b.height, b.width);
    const int64_t per_image = num_classes_ * coarse.size(2) * coarse.size(3);
    for (int64_t i = 0; i < n; ++i) {
      const float* logits = coarse.data_ptr<float>() + i * per_image;
      auto* labels = static_cast<uint8_t*>(outs[i]);
      tail->prepare(logits);
      at::parallel_for(0, b.height, 16,
                       [&](int64_t begin, int64_t end) { tail->rows(logits, begin, end, labels + begin * b.width); });
    }
  }

  at::Tensor execute(size_t bucket, const at::Tensor& input) {
    try {
      std::vector<at::Tensor> outs = models_[bucket]->run({input});
      if (outs.size() != 1) throw Error("forward: expected 1 output, got " + std::to_string(outs.size()));
      return outs[0];
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error("Segmenter: forward failed on input " + shape_string(input.sizes().vec()) + ": " +
                  first_line(e.what()));
    }
  }

  void warm_up() {
    BlockCache::Scope cache_scope(cache_);
    TorchScope scope(options_.threads);
    std::vector<uint8_t> scratch;
    auto run_once = [&](size_t i) {
      const Bucket& b = buckets_[i];
      scratch.resize(static_cast<size_t>(b.batch * b.height * b.width));
      std::vector<void*> outs;
      for (int64_t k = 0; k < b.batch; ++k) outs.push_back(scratch.data() + k * b.height * b.width);
      labels_out(i, execute(i, inputs_[i]), b.batch, outs.data());
    };
    for (size_t i = 0; i < buckets_.size(); ++i) {
      inputs_[i].copy_(at::randint(0, 256, inputs_[i].sizes(), at::TensorOptions(at::kByte)));
      for (int k = 0; k < options_.warmup; ++k) {
        auto t0 = Clock::now();
        try {
          run_once(i);
        } catch (const Error& e) {
          throw Error("Segmenter: warm-up of bucket " + buckets_[i].name() + " failed: " + e.what());
        }
        if (i == 0 && k == 0) first_call_ms_ = ms_since(t0);
      }
    }
    warm_ = settle(cache_, [&] {
      for (size_t i = 0; i < buckets_.size(); ++i) run_once(i);
    });
  }

  Options options_;
  PackageInfo package_;
  int64_t num_classes_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> models_;
  std::vector<at::Tensor> inputs_;
  std::unique_ptr<Engine> fallback_;
  std::vector<std::unique_ptr<UpsampleLabels>> tails_;  // per bucket, made at warm-up
  BlockCache cache_;
  BlockCache::Counters warm_;
  double first_call_ms_ = 0;
};

}  // namespace

std::vector<Bucket> resolve_package_plan(const PackageInfo& package, const std::string& path, Options* options) {
  // A package runs in the precision it was compiled for; the default (fp32) means "the
  // package's", so an int8 or bf16 package needs no option.
  if (options->precision == Precision::fp32 && package.precision != "fp32")
    options->precision = parse_precision(package.precision);
  if (to_string(options->precision) != package.precision)
    throw InvalidArgument("Options: 'precision': expected '" + package.precision +
                          "' (the precision this package was compiled for), got '" + to_string(options->precision) +
                          "'");
  auto compiled = [&](const Bucket& b) {
    for (const Bucket& p : package.buckets)
      if (p.batch == b.batch && p.height == b.height && p.width == b.width) return true;
    return false;
  };
  if (options->shapes.empty()) {
    int64_t max_batch = 1;
    for (const Bucket& p : package.buckets) {
      max_batch = std::max(max_batch, p.batch);
      const Shape s{p.height, p.width};
      if (std::find(options->shapes.begin(), options->shapes.end(), s) == options->shapes.end())
        options->shapes.push_back(s);
    }
    // A batch-invariant engine runs batch 1 only, whatever else the package holds.
    options->max_batch = options->batch_invariant ? 1 : max_batch;
  }
  std::string have;
  for (const Bucket& p : package.buckets) have += (have.empty() ? "" : ", ") + p.name();
  for (const Bucket& b : make_buckets(options->shapes, options->max_batch))
    if (!compiled(b))
      throw InvalidArgument("Options: 'shapes'/'max_batch': expected buckets compiled into package '" + path + "' (" +
                            have + "), got " + b.name() + " (recompile with these shapes and max_batch)");
  return make_buckets(options->shapes, options->max_batch);
}

std::unique_ptr<Engine> make_fallback_engine(const std::string& bytes,
                                             const std::function<std::unique_ptr<Engine>(const std::string&)>& make) {
  TempFile file(bytes);
  return make(file.path());
}

std::unique_ptr<Engine> make_aoti_engine(const std::string& path, const Options& options, Metadata* metadata,
                                         Options* resolved) {
  const PackageContents contents = read_package(path, options, metadata);
  if (contents.info.device == "cuda") return make_aoti_cuda_engine(path, options, metadata, contents, resolved);
  auto engine = std::make_unique<AotiEngine>(path, options, metadata, contents);
  *resolved = engine->options();
  return engine;
}

}  // namespace ifa_rt::detail
