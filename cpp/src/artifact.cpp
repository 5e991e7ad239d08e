// Loading an `.ifa.pt` artifact: the TorchScript archive plus its `ifa_rt.json`.
#include "artifact.h"

#include <torch/csrc/jit/frontend/error_report.h>
#include <torch/script.h>

#include <fstream>

#include "ifa_rt/version.h"
#include "torch_scope.h"
#include "zip_check.h"

namespace ifa_rt::detail {
namespace {

// The first line of a c10 error (the rest is a C++/TorchScript backtrace). LibTorch quotes
// bytes of a corrupt archive in it; those become '?' so the message stays valid UTF-8 (a
// Python str) and printable.
std::string first_line(const std::string& what) {
  auto end = what.find('\n');
  std::string line = end == std::string::npos ? what : what.substr(0, end);
  for (char& c : line)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return line;
}

void check_method(const torch::jit::Module& module, const std::string& name) {
  auto method = module.find_method(name);
  if (!method) throw Error("method '" + name + "': expected a scripted method (docs/artifact.md), got none");
  const auto& args = method->function().getSchema().arguments();
  // args[0] is self.
  if (args.size() != 2)
    throw Error("method '" + name + "': expected 1 input (images uint8 [B,H,W,3]), got " +
                std::to_string(args.size() - 1));
  // Types too: a method that takes or returns something else (a tuple, a list) would only
  // fail later, inside freezing, with a TorchScript compiler error.
  if (!args[1].type()->isSubtypeOf(*c10::TensorType::get()))
    throw Error("method '" + name + "': expected a Tensor input (images uint8 [B,H,W,3]), got " +
                args[1].type()->annotation_str());
  const auto& returns = method->function().getSchema().returns();
  if (returns.size() != 1 || !returns[0].type()->isSubtypeOf(*c10::TensorType::get()))
    throw Error(
        "method '" + name + "': expected a Tensor result (docs/artifact.md), got " +
        (returns.size() == 1 ? returns[0].type()->annotation_str() : std::to_string(returns.size()) + " results"));
}

}  // namespace

torch::jit::Module load_artifact(const std::string& path, Metadata* metadata) {
  const std::string where = "failed to load artifact '" + path + "': ";
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(where + "no such file or not readable");
  }
  try {
    detail::check_zip(path);  // bounds and CRCs first: LibTorch trusts every length it reads
  } catch (const Error& e) {
    throw Error(where + "not a readable TorchScript archive: " + e.what());
  }
  TorchScope scope;
  torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
  torch::jit::Module module;
  try {
    // Without the .debug_pkl records: they only map code back to the exporter's Python
    // source for tracebacks (error_summary keeps the last line anyway), and LibTorch
    // dereferences them unchecked while reporting a parse error, so one flipped bit there
    // segfaulted the process (found by fuzz/run_fuzz.sh).
    module = torch::jit::load(path, torch::kCPU, extra, /*load_debug_files=*/false);
  } catch (const c10::Error& e) {
    throw Error(where + "not a readable TorchScript archive: " + first_line(e.what_without_backtrace()));
  } catch (const torch::jit::ErrorReport&) {
    // Its code does not compile. ErrorReport::what() is not called: it renders the source
    // context from the archive's debug info, and on a corrupt archive that throws inside a
    // noexcept function, which aborts the process (found by fuzz/run_fuzz.sh).
    throw Error(where + "not a readable TorchScript archive: its TorchScript code does not compile with torch " +
                ifa_rt::torch_version() + " (a corrupt file, or code from a newer torch)");
  } catch (const std::bad_alloc&) {
    // A corrupt length field (fuzz/regressions/artifact-huge-record.pt asks for 30 GB).
    throw Error(where +
                "not a readable TorchScript archive: a record needs more memory than is "
                "available (std::bad_alloc; a corrupt file?)");
  } catch (const std::exception& e) {
    throw Error(where + "not a readable TorchScript archive: " + first_line(e.what()));
  }
  const std::string& json = extra[kMetadataFile];
  if (json.empty())
    throw Error(where + "metadata '" + kMetadataFile + "': expected a JSON extra file (an ifa_rt artifact), got none");
  try {
    *metadata = parse_metadata(json);
    check_method(module, "forward");
    check_method(module, "logits");
  } catch (const Error& e) {
    throw Error(where + e.what());
  }
  module.eval();
  return module;
}

torch::jit::Module freeze_method(const torch::jit::Module& module, const std::string& method) {
  torch::jit::Module wrapper("ifa_rt_" + method);
  wrapper.register_attribute("training", c10::BoolType::get(), false);
  wrapper.register_module("m", module);
  wrapper.define("def forward(self, images: Tensor) -> Tensor:\n    return self.m." + method + "(images)\n");
  return torch::jit::freeze(wrapper);
}

void configure_cache(torch::jit::Module& module, const Options& options) {
  auto method = module.find_method("configure_cache");
  if (!method) return;  // an artifact without per-shape state
  c10::List<c10::List<int64_t>> planned;
  for (const Shape& s : options.shapes) planned.push_back(c10::List<int64_t>({s.height, s.width}));
  int64_t capacity = options.shape_cache;
  // Artifacts older than this flag evicted the size in use before its entries existed, so
  // capacity 0 kept every size for good; one kept size is the nearest bounded behaviour.
  if (capacity == 0 && !module.hasattr("zero_capacity_keeps_none")) capacity = 1;
  (*method)({planned, capacity});
}

Metadata read_metadata(const std::string& path) {
  Metadata m;
  load_artifact(path, &m);
  return m;
}

}  // namespace ifa_rt::detail
