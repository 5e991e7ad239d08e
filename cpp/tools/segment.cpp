// ifa-rt-segment: segment image files with the C++ runtime (stb_image in, label PNGs out).
// Shapes default to the sizes of the images given (each planned, so each call runs a bucket).
// Usage: kUsage below.
#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "args.h"

namespace fs = std::filesystem;

namespace {

constexpr const char* kUsage =
    "usage: ifa-rt-segment MODEL OUT_DIR IMAGE... [options]\n"
    "       ifa-rt-segment --model MODEL OUT_DIR IMAGE... [options]\n"
    "\n"
    "Segment image files (PNG, JPEG, BMP) with the C++ runtime. For each IMAGE writes\n"
    "OUT_DIR/<stem>_labels.png (8-bit class ids) and OUT_DIR/<stem>_color.png (the model's\n"
    "palette), and prints the latency and the classes found.\n"
    "\n"
    "MODEL: an artifact path (.ifa.pt, .pt2) or a bundled model name (camvid), looked up in\n"
    "$IFA_RT_MODELS (':'-separated folders), then in the installed package (cpp/README.md).\n"
    "\n"
    "options:\n"
    "  --shapes HxW[,HxW...]   input sizes to plan (default: the sizes of the images)\n"
    "  --device cpu|cuda:N     where to run (default cpu)\n"
    "  --precision P           fp32, fp16, bf16, int8 (default fp32)\n"
    "  --threads N             intra-op threads (default: torch's)\n"
    "  --max-batch N, --runtime R, --optimize B, --strict, --warmup N: as ifa_rt::Options\n"
    "  -h, --help              show this help and exit\n";

}  // namespace

int main(int argc, char** argv) {
  try {
    if (tools::wants_help(argc, argv)) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    tools::Args args = tools::parse_args(argc, argv, {"model"});
    const std::string model = tools::take_model(args, "ifa-rt-segment");
    if (model.empty() || args.positional.size() < 2) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    struct Image {
      std::string path;
      int w = 0, h = 0;
      std::vector<uint8_t> rgb;
    };
    std::vector<Image> images;
    for (size_t i = 1; i < args.positional.size(); ++i) {
      Image im;
      im.path = args.positional[i];
      int channels = 0;
      uint8_t* data = stbi_load(im.path.c_str(), &im.w, &im.h, &channels, 3);
      if (data == nullptr)
        throw ifa_rt::Error("ifa-rt-segment: image '" + im.path +
                            "': expected a PNG/JPEG/BMP file, got: " + stbi_failure_reason());
      im.rgb.assign(data, data + static_cast<size_t>(im.w) * im.h * 3);
      stbi_image_free(data);
      images.push_back(std::move(im));
    }
    ifa_rt::Options options = ifa_rt::Options::from_map(args.options);
    if (options.shapes.empty())
      for (const Image& im : images) {
        ifa_rt::Shape s{im.h, im.w};
        if (std::find(options.shapes.begin(), options.shapes.end(), s) == options.shapes.end())
          options.shapes.push_back(s);
      }
    ifa_rt::Segmenter seg(model, options);
    const ifa_rt::Metadata& meta = seg.metadata();
    fs::path out_dir = args.positional[0];
    fs::create_directories(out_dir);
    std::vector<double> ms;
    for (const Image& im : images) {
      ifa_rt::TensorView v{im.rgb.data(), ifa_rt::DType::uint8, {im.h, im.w, 3}, {}};
      ifa_rt::Result r = seg.segment(v);
      ms.push_back(r.milliseconds);
      std::vector<uint8_t> color(r.labels.size() * 3);
      std::vector<int64_t> count(static_cast<size_t>(meta.num_classes), 0);
      for (size_t p = 0; p < r.labels.size(); ++p) {
        const uint8_t c = r.labels[p];
        if (c < meta.num_classes) {
          count[c]++;
          std::copy(meta.palette[c].begin(), meta.palette[c].end(), color.begin() + static_cast<long>(3 * p));
        }
      }
      const std::string stem = fs::path(im.path).stem().string();
      const std::string labels_png = (out_dir / (stem + "_labels.png")).string();
      const std::string color_png = (out_dir / (stem + "_color.png")).string();
      if (!stbi_write_png(labels_png.c_str(), im.w, im.h, 1, r.labels.data(), im.w) ||
          !stbi_write_png(color_png.c_str(), im.w, im.h, 3, color.data(), im.w * 3))
        throw ifa_rt::Error("ifa-rt-segment: output '" + labels_png + "': expected a writable path, got a write error");
      std::printf("%s: %dx%d %.1f ms ->", im.path.c_str(), im.w, im.h, r.milliseconds);
      for (size_t c = 0; c < count.size(); ++c)
        if (count[c] > 0)
          std::printf(" %s %.1f%%", meta.classes[c].c_str(), 100.0 * static_cast<double>(count[c]) / r.labels.size());
      std::printf("\n");
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%zu images, p50 %.1f ms, wrote %s\n", ms.size(), ms[ms.size() / 2], out_dir.string().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ifa-rt-segment: error: " << e.what() << "\n";
    return 1;
  }
}
