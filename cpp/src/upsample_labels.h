#pragma once
// Labels from a compiled package's coarse logits: the model's final bilinear upsample
// (align_corners=True) and first-maximum over classes, done by the runtime instead of inside
// the compiled graph (there it took 22 % of an int8 call on the bundled model). Pure C++.
#include <cstdint>
#include <vector>

namespace ifa_rt::detail {

/// Labels uint8 [H,W] of float32 logits [C,h,w]: the first maximum over classes (NaN wins) of
/// their bilinear upsampling with align_corners=True, i.e.
/// `F.interpolate(logits, (H, W), mode="bilinear", align_corners=True).max(1).indices`, with
/// ATen's source coordinates, weights and order of operations. Only pixels whose four source
/// cells do not share one class that leads by a safe margin visit every class: a convex
/// combination of logits in which one class leads at every corner keeps it in the lead, and
/// the margin (1e-5 x the largest logit) dwarfs fp32 rounding, so the skip never changes a
/// label. Tables are built once per shape; a call allocates nothing.
class UpsampleLabels {
 public:
  UpsampleLabels(int64_t classes, int64_t height, int64_t width, int64_t out_height, int64_t out_width);

  /// Per image, before rows(): which coarse cells lead by a safe margin, and with what class.
  void prepare(const float* logits);
  /// Output rows [begin, end) of the image prepare() saw, into `labels` (row `begin` first).
  /// Different row ranges may run concurrently.
  void rows(const float* logits, int64_t begin, int64_t end, uint8_t* labels) const;

  int64_t classes() const { return classes_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }

 private:
  // Source index pair and weights of each output coordinate along one axis.
  struct Axis {
    std::vector<int64_t> i0, i1;
    std::vector<float> w0, w1;
  };
  static Axis axis(int64_t in, int64_t out);
  uint8_t full(const float* logits, int64_t y, int64_t x) const;

  int64_t classes_, height_, width_, out_height_, out_width_;
  Axis ys_, xs_;
  std::vector<int16_t> leader_;      // per coarse cell: the class leading by the margin, or -1
  std::vector<float> top_, second_;  // prepare()'s per-cell scratch
  std::vector<uint8_t> finite_;
};

}  // namespace ifa_rt::detail
