// ifa-rt-bench: latency of the C++ runtime per planned bucket (p50/p90/p99, images/s).
// Each (batch, shape) is timed with `iters` calls on random images after construction's
// warm-up; the JSON has one record per bucket plus the plan and stats. Usage: kUsage below.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "args.h"

namespace {

constexpr const char* kUsage =
    "usage: ifa-rt-bench MODEL --shapes HxW[,HxW...] [options]\n"
    "       ifa-rt-bench --model MODEL --shapes HxW[,HxW...] [options]\n"
    "\n"
    "Latency of the C++ runtime per planned bucket (batch x shape): p50/p90/p99 ms and images/s\n"
    "on random images, after warm-up.\n"
    "\n"
    "MODEL: an artifact path (.ifa.pt, .pt2) or a bundled model name (camvid), looked up in\n"
    "$IFA_RT_MODELS (':'-separated folders), then in the installed package (cpp/README.md).\n"
    "\n"
    "options:\n"
    "  --shapes HxW[,HxW...]   input sizes to plan and time (required)\n"
    "  --max-batch N           largest planned batch (default 1)\n"
    "  --batches 1,2,4         batch sizes to time (default 1, 2, 4, ... up to --max-batch)\n"
    "  --iters N               timed calls per bucket (default 50)\n"
    "  --device cpu|cuda:N     where to run (default cpu)\n"
    "  --precision P           fp32, fp16, bf16, int8 (default fp32)\n"
    "  --threads N             intra-op threads (default: torch's)\n"
    "  --runtime R             auto, jit, static (TorchScript on the CPU) or aoti (a .pt2)\n"
    "  --optimize true|false   optimize_for_inference on the frozen graph\n"
    "  --strict, --warmup N, --channels-last, --plan-logits: as ifa_rt::Options\n"
    "  --json OUT.json         also write the results as JSON\n"
    "  -h, --help              show this help and exit\n";

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (tools::wants_help(argc, argv)) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    tools::Args args = tools::parse_args(argc, argv, {"iters", "json", "batches", "model"});
    const std::string model = tools::take_model(args, "ifa-rt-bench");
    if (model.empty() || !args.positional.empty()) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    ifa_rt::Options options = ifa_rt::Options::from_map(args.options);
    if (options.shapes.empty())
      throw ifa_rt::InvalidArgument("ifa-rt-bench: '--shapes': expected HxW[,HxW...], got none");
    const int iters = args.own.count("iters") ? std::stoi(args.own["iters"]) : 50;
    std::vector<int64_t> batches;
    if (args.own.count("batches")) {
      std::stringstream ss(args.own["batches"]);
      std::string item;
      while (std::getline(ss, item, ',')) batches.push_back(std::stoll(item));
    } else {
      for (int64_t b = 1; b < options.max_batch; b *= 2) batches.push_back(b);
      batches.push_back(options.max_batch);
    }
    ifa_rt::Segmenter seg(model, options);
    const ifa_rt::Plan plan = seg.plan();
    std::printf("ifa-rt-bench: %s on %s (%s, %s), plan %.1f MiB, construction %.0f ms, first call %.1f ms\n",
                model.c_str(), plan.device.c_str(), plan.runtime.c_str(), ifa_rt::to_string(plan.precision).c_str(),
                plan.total_bytes() / 1048576.0, seg.stats().construction_ms, seg.stats().first_call_ms);
    std::printf("%-16s %8s %8s %8s %8s %10s\n", "bucket", "p50 ms", "p90 ms", "p99 ms", "mean ms", "images/s");
    std::mt19937 rng(0);
    std::ostringstream records;
    for (const ifa_rt::Shape& shape : options.shapes)
      for (int64_t b : batches) {
        std::vector<uint8_t> images(static_cast<size_t>(b * shape.height * shape.width * 3));
        for (auto& x : images) x = static_cast<uint8_t>(rng());
        std::vector<uint8_t> labels(static_cast<size_t>(b * shape.height * shape.width));
        ifa_rt::TensorView v{images.data(), ifa_rt::DType::uint8, {b, shape.height, shape.width, 3}, {}};
        std::vector<double> ms;
        for (int i = 0; i < iters; ++i) {
          auto t0 = std::chrono::steady_clock::now();
          seg.segment(v, labels.data(), static_cast<int64_t>(labels.size()));
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        double mean = 0;
        for (double x : ms) mean += x / static_cast<double>(ms.size());
        const std::string name =
            std::to_string(b) + "x" + std::to_string(shape.height) + "x" + std::to_string(shape.width);
        std::printf("%-16s %8.2f %8.2f %8.2f %8.2f %10.1f\n", name.c_str(), pct(ms, .5), pct(ms, .9), pct(ms, .99),
                    mean, 1000.0 * static_cast<double>(b) / pct(ms, .5));
        records << (records.tellp() > 0 ? ",\n" : "") << "    {\"batch\": " << b << ", \"height\": " << shape.height
                << ", \"width\": " << shape.width << ", \"iters\": " << iters << ", \"p50_ms\": " << pct(ms, .5)
                << ", \"p90_ms\": " << pct(ms, .9) << ", \"p99_ms\": " << pct(ms, .99) << ", \"mean_ms\": " << mean
                << ", \"images_per_s\": " << 1000.0 * static_cast<double>(b) / pct(ms, .5) << "}";
      }
    const ifa_rt::Stats st = seg.stats();
    std::printf("fallback runs %lld, allocations after warm-up %lld\n", static_cast<long long>(st.fallback_calls),
                static_cast<long long>(st.allocations_after_warmup));
    if (args.own.count("json")) {
      std::ofstream f(args.own["json"]);
      f << "{\n  \"tool\": \"ifa-rt-bench\",\n  \"artifact\": \"" << json_escape(model) << "\",\n  \"device\": \""
        << plan.device << "\",\n  \"runtime\": \"" << plan.runtime << "\",\n  \"precision\": \""
        << ifa_rt::to_string(plan.precision) << "\",\n  \"threads\": " << options.threads
        << ",\n  \"plan_bytes\": " << plan.total_bytes() << ",\n  \"construction_ms\": " << st.construction_ms
        << ",\n  \"first_call_ms\": " << st.first_call_ms
        << ",\n  \"allocations_after_warmup\": " << st.allocations_after_warmup
        << ",\n  \"fallback_calls\": " << st.fallback_calls << ",\n  \"results\": [\n"
        << records.str() << "\n  ]\n}\n";
      std::printf("wrote %s\n", args.own["json"].c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ifa-rt-bench: error: " << e.what() << "\n";
    return 1;
  }
}
