// cpp_app: segment one image with the ifa_rt C++ runtime and print the classes found.
//   usage: cpp_app MODEL.ifa.pt IMAGE [cpu|cuda]
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#include <ifa_rt/segmenter.h>
#include <stb_image.h>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.ifa.pt IMAGE [cpu|cuda]\n", argv[0]);
    return 2;
  }
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load(argv[2], &width, &height, &channels, 3);
  if (pixels == nullptr) {
    std::fprintf(stderr, "cpp_app: cannot read image '%s': %s\n", argv[2], stbi_failure_reason());
    return 1;
  }
  try {
    ifa_rt::Options options;
    options.device = argc > 3 ? argv[3] : "cpu";
    options.shapes = {{height, width}};  // plan exactly this size
    ifa_rt::Segmenter segmenter(argv[1], options);

    ifa_rt::TensorView image{pixels, ifa_rt::DType::uint8, {height, width, 3}, {}};
    ifa_rt::Result result = segmenter.segment(image);

    const ifa_rt::Metadata& meta = segmenter.metadata();
    std::vector<long> count(static_cast<size_t>(meta.num_classes), 0);
    for (uint8_t label : result.labels) count[label]++;
    std::printf("%s: %dx%d, %s (%s), %.1f ms\n", argv[2], width, height, meta.preset.c_str(),
                segmenter.plan().runtime.c_str(), result.milliseconds);
    std::printf("classes found:\n");
    for (size_t c = 0; c < count.size(); ++c)
      if (count[c] > 0)
        std::printf("  %-14s %5.1f%%\n", meta.classes[c].c_str(), 100.0 * count[c] / result.labels.size());
  } catch (const std::exception& e) {  // ifa_rt::Error and ifa_rt::InvalidArgument
    std::fprintf(stderr, "cpp_app: %s\n", e.what());
    stbi_image_free(pixels);
    return 1;
  }
  stbi_image_free(pixels);
  return 0;
}
