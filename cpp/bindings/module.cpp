// pybind11 module ifa_rt._core: the C++ runtime exposed to Python. No torch here: numpy
// arrays are handed to the library as TensorViews (no copy), outputs are numpy arrays the
// Python side allocates, and the GIL is released while the engine runs. CUDA tensors come as
// DeviceArrays (pointer, shape, strides), with outputs the Python side allocated on the device.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>

#include "bindings.h"
#include "ifa_rt/batcher.h"
#include "ifa_rt/segmenter.h"
#include "ifa_rt/version.h"

namespace py = pybind11;
using ifa_rt::DType;
using ifa_rt::InvalidArgument;
using ifa_rt::TensorView;

namespace {

const std::map<std::string, DType>& dtypes() {
  static const std::map<std::string, DType> m = {
      {"uint8", DType::uint8},     {"int8", DType::int8},       {"int16", DType::int16},
      {"int32", DType::int32},     {"int64", DType::int64},     {"float16", DType::float16},
      {"float32", DType::float32}, {"float64", DType::float64}, {"bool", DType::bool_}};
  return m;
}

// A view of a numpy array (element strides). The array must outlive the call.
TensorView to_view(const py::array& a, const std::string& where, const std::string& name) {
  const std::string dtype = py::str(a.dtype().attr("name"));
  auto it = dtypes().find(dtype);
  if (it == dtypes().end()) throw InvalidArgument(where + ": input '" + name + "': expected dtype uint8, got " + dtype);
  TensorView v;
  v.data = a.data();
  v.dtype = it->second;
  const auto itemsize = static_cast<int64_t>(a.itemsize());
  for (py::ssize_t k = 0; k < a.ndim(); ++k) {
    v.shape.push_back(static_cast<int64_t>(a.shape(k)));
    const auto stride = static_cast<int64_t>(a.strides(k));
    if (stride % itemsize != 0)
      throw InvalidArgument(where + ": input '" + name + "': expected strides in whole elements, got " +
                            std::to_string(stride) + " bytes");
    v.strides.push_back(stride / itemsize);
  }
  return v;
}

template <class T>
T* output_ptr(py::array& out, const std::string& where, const std::string& name, int64_t* size) {
  if (!py::isinstance<py::array_t<T>>(out) || !(out.flags() & py::array::c_style) || !out.writeable())
    throw InvalidArgument(where + ": output '" + name + "': expected a writable C-contiguous " +
                          (sizeof(T) == 1 ? "uint8" : "float32") + " array, got another array");
  *size = static_cast<int64_t>(out.size());
  return static_cast<T*>(out.mutable_data());
}

py::dict plan_dict(const ifa_rt::Plan& p) {
  py::list buckets, buffers;
  for (const auto& b : p.buckets) buckets.append(py::make_tuple(b.batch, b.height, b.width));
  for (const auto& b : p.buffers)
    buffers.append(py::dict(py::arg("name") = b.name, py::arg("device") = b.device, py::arg("dtype") = b.dtype,
                            py::arg("shape") = py::tuple(py::cast(b.shape)), py::arg("bytes") = b.bytes));
  return py::dict(py::arg("device") = p.device, py::arg("precision") = ifa_rt::to_string(p.precision),
                  py::arg("runtime") = p.runtime, py::arg("buckets") = buckets, py::arg("buffers") = buffers,
                  py::arg("total_bytes") = p.total_bytes(),
                  py::arg("arena") = py::dict(py::arg("bytes") = p.arena_bytes, py::arg("blocks") = p.arena_blocks,
                                              py::arg("peak_live_bytes") = p.peak_live_bytes));
}

// f() with the GIL released: engine queries wait for the engine's mutex while a call is in
// flight, and must not hold up the other Python threads meanwhile.
template <class F>
auto without_gil(F&& f) {
  py::gil_scoped_release unlocked;
  return f();
}

py::dict stats_dict(const ifa_rt::Stats& s) {
  py::dict buckets;
  for (const auto& b : s.buckets)
    buckets[py::str(b.bucket.name())] =
        py::dict(py::arg("calls") = b.calls, py::arg("mean_ms") = b.mean_ms, py::arg("p50_ms") = b.p50_ms,
                 py::arg("p90_ms") = b.p90_ms, py::arg("p99_ms") = b.p99_ms, py::arg("min_ms") = b.min_ms,
                 py::arg("max_ms") = b.max_ms);
  return py::dict(py::arg("calls") = s.calls, py::arg("images") = s.images, py::arg("bucket_runs") = s.bucket_runs,
                  py::arg("padded_images") = s.padded_images, py::arg("fallback_calls") = s.fallback_calls,
                  py::arg("allocations_after_warmup") = s.allocations_after_warmup,
                  py::arg("bytes_allocated_after_warmup") = s.bytes_allocated_after_warmup,
                  py::arg("cached_allocations_after_warmup") = s.cached_allocations_after_warmup,
                  py::arg("unattributed_allocations_in_calls") = s.unattributed_allocations_in_calls,
                  py::arg("arena_bytes") = s.arena_bytes, py::arg("arena_blocks") = s.arena_blocks,
                  py::arg("arena_peak_live_bytes") = s.arena_peak_live_bytes, py::arg("shape_cache") = s.shape_cache,
                  py::arg("learned_shapes") = shapes_to_list(s.learned_shapes), py::arg("heap_trims") = s.heap_trims,
                  py::arg("construction_ms") = s.construction_ms, py::arg("first_call_ms") = s.first_call_ms,
                  py::arg("buckets") = buckets);
}

// The engine calls shared by Segmenter and SegmenterPool.
template <class E>
void logits_into(E& e, const py::array& images, py::array& out) {
  const std::string where = "Segmenter.logits";
  TensorView v = to_view(images, where, "images");
  int64_t size = 0;
  float* dst = output_ptr<float>(out, where, "logits", &size);
  py::gil_scoped_release release;
  e.logits(v, dst, size);
}

template <class E>
void segment_into(E& e, const py::array& images, py::array& out) {
  const std::string where = "Segmenter.segment";
  TensorView v = to_view(images, where, "images");
  int64_t size = 0;
  uint8_t* dst = output_ptr<uint8_t>(out, where, "labels", &size);
  py::gil_scoped_release release;
  e.segment(v, dst, size);
}

// The shape of a call's result for an input of `shape`: [H,W,3] -> [H,W] labels or [C,H,W]
// logits, [B,H,W,3] -> [B,H,W] or [B,C,H,W]; an input of another rank gets an empty result and
// the engine names what is wrong with it.
std::vector<py::ssize_t> output_shape(const std::vector<py::ssize_t>& shape, bool logits, int64_t classes) {
  if (shape.size() != 3 && shape.size() != 4) return {0};
  std::vector<py::ssize_t> out(shape.begin(), shape.end() - 1);
  if (logits) out.insert(out.end() - 2, static_cast<py::ssize_t>(classes));
  return out;
}

std::vector<py::ssize_t> array_shape(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

template <class E>
py::array segment_new(E& e, const py::array& images) {
  py::array_t<uint8_t> out(output_shape(array_shape(images), false, 0));
  segment_into(e, images, out);
  return out;
}

template <class E>
py::array logits_new(E& e, const py::array& images, int64_t classes) {
  py::array_t<float> out(output_shape(array_shape(images), true, classes));
  logits_into(e, images, out);
  return out;
}

template <class E>
void segment_list(E& e, const py::list& images, const py::list& outs) {
  const std::string where = "Segmenter.segment";
  std::vector<py::array> keep;
  std::vector<TensorView> views;
  std::vector<uint8_t*> ptrs;
  for (size_t i = 0; i < images.size(); ++i) {
    keep.push_back(images[i].cast<py::array>());
    views.push_back(to_view(keep.back(), where, "images[" + std::to_string(i) + "]"));
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    py::array o = outs[i].cast<py::array>();
    int64_t size = 0;
    ptrs.push_back(output_ptr<uint8_t>(o, where, "labels[" + std::to_string(i) + "]", &size));
    keep.push_back(o);
  }
  py::gil_scoped_release release;
  e.segment(views, ptrs);
}

// Device memory as the Python side describes it (a CUDA tensor's data_ptr, shape, strides in
// elements and dtype name): the runtime checks that it is on the engine's device.
struct DeviceArray {
  uintptr_t data = 0;
  std::vector<int64_t> shape, strides;
  std::string dtype;
};

TensorView device_view(const DeviceArray& a, const std::string& where, const std::string& name) {
  auto it = dtypes().find(a.dtype);
  if (it == dtypes().end())
    throw InvalidArgument(where + ": input '" + name + "': expected dtype uint8, got " + a.dtype);
  return TensorView{reinterpret_cast<const void*>(a.data), it->second, a.shape, a.strides};
}

template <class E>
void segment_device(E& e, const DeviceArray& images, uintptr_t out, int64_t out_size, uintptr_t stream) {
  TensorView v = device_view(images, "Segmenter.segment_on_device", "images");
  py::gil_scoped_release release;
  e.segment_on_device(v, reinterpret_cast<uint8_t*>(out), out_size, reinterpret_cast<void*>(stream));
}

template <class E>
void logits_device(E& e, const DeviceArray& images, uintptr_t out, int64_t out_size, uintptr_t stream) {
  TensorView v = device_view(images, "Segmenter.logits_on_device", "images");
  py::gil_scoped_release release;
  e.logits_on_device(v, reinterpret_cast<float*>(out), out_size, reinterpret_cast<void*>(stream));
}

// A Batcher whose completions call back into Python. Closing and destroying it release the
// GIL: its workers need the GIL to complete their last requests.
struct PyBatcher {
  std::unique_ptr<ifa_rt::Batcher> batcher;
  void close(bool drain) {
    py::gil_scoped_release release;
    batcher->close(drain);
  }
  ~PyBatcher() {
    py::gil_scoped_release release;
    batcher.reset();
  }
};

// What one Python request holds until it completes: its arrays (the C++ side borrows their
// memory) and the completion function. Touched only with the GIL held.
struct PyRequest {
  py::object image, out, done;
};

// Calls done(error) under the GIL: None on success, else the exception the Future raises
// (ValueError for bad input, RuntimeError for a failure, CancelledError when close(false)
// dropped the request). Python exceptions are reported as unraisable: a worker thread has no
// caller.
void complete_in_python(PyRequest& req, std::exception_ptr error) {
  py::gil_scoped_acquire gil;
  try {
    py::object outcome = py::none();
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const ifa_rt::Cancelled& e) {
        outcome = py::module_::import("concurrent.futures").attr("CancelledError")(e.what());
      } catch (const std::invalid_argument& e) {
        outcome = py::reinterpret_borrow<py::object>(PyExc_ValueError)(e.what());
      } catch (const std::exception& e) {
        outcome = py::reinterpret_borrow<py::object>(PyExc_RuntimeError)(e.what());
      } catch (...) {
        outcome = py::reinterpret_borrow<py::object>(PyExc_RuntimeError)("Batcher: unknown error");
      }
    }
    req.done(outcome);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("ifa_rt Batcher completion");
  }
  // Dropped here, under the GIL; the C++ side frees the empty holder later without it.
  req.image = py::object();
  req.out = py::object();
  req.done = py::object();
}

void batcher_submit(PyBatcher& b, const py::array& image, py::array& out, const py::function& done) {
  const std::string where = "Batcher.submit";
  TensorView v = to_view(image, where, "image");
  int64_t size = 0;
  uint8_t* dst = output_ptr<uint8_t>(out, where, "labels", &size);
  auto req = std::make_shared<PyRequest>(PyRequest{image, out, done});
  b.batcher->submit(v, dst, size, [req](std::exception_ptr e) { complete_in_python(*req, std::move(e)); });
}

py::dict batcher_stats(const ifa_rt::BatcherStats& s) {
  return py::dict(py::arg("requests") = s.requests, py::arg("completed") = s.completed, py::arg("failed") = s.failed,
                  py::arg("cancelled") = s.cancelled, py::arg("batches") = s.batches,
                  py::arg("batched_requests") = s.batched_requests, py::arg("retried_batches") = s.retried_batches,
                  py::arg("mean_batch_size") = s.mean_batch_size(), py::arg("batch_sizes") = s.batch_sizes,
                  py::arg("mean_queue_us") = s.mean_queue_us, py::arg("max_queue_us") = s.max_queue_us);
}

template <class E>
PyBatcher* make_batcher(E& engine, const ifa_rt::BatcherOptions& options) {
  return new PyBatcher{std::make_unique<ifa_rt::Batcher>(engine, options)};
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ifa_rt C++ runtime (LibTorch) bindings";
  m.def("version", &ifa_rt::version, "The ifa_rt C++ library version.");
  m.def("torch_version", &ifa_rt::torch_version, "The torch version the extension was compiled against.");
  m.def("has_cuda_engine", &ifa_rt::has_cuda_engine, "True when the CUDA engine was compiled in.");
  m.def(
      "wait_for_batcher_workers",
      [](double seconds) { return without_gil([&] { return ifa_rt::Batcher::wait_for_workers(seconds); }); },
      py::arg("seconds"), "Wait (GIL released) until no Batcher worker runs; False on timeout.");

  bind_options(m);

  py::class_<DeviceArray>(m, "DeviceArray", "Device memory handed to a device-memory call (no copy).")
      .def(py::init([](uintptr_t data, std::vector<int64_t> shape, std::vector<int64_t> strides, std::string dtype) {
             return DeviceArray{data, std::move(shape), std::move(strides), std::move(dtype)};
           }),
           py::arg("data"), py::arg("shape"), py::arg("strides"), py::arg("dtype"),
           "A data pointer, shape, strides (elements) and dtype name of memory on a CUDA device.");

  py::class_<ifa_rt::Segmenter>(m, "Segmenter", "One planned, warmed-up engine (ifa_rt::Segmenter).")
      .def(py::init([](const std::string& path, const ifa_rt::Options& o) {
             py::gil_scoped_release release;
             return new ifa_rt::Segmenter(path, o);
           }),
           py::arg("path"), py::arg("options"), "Load, plan and warm up (GIL released).")
      .def("segment", &segment_new<ifa_rt::Segmenter>, py::arg("images"),
           "Labels (uint8 [H,W] / [B,H,W]) of uint8 [H,W,3] / [B,H,W,3] images, in a new array.")
      .def(
          "logits",
          [](ifa_rt::Segmenter& s, const py::array& images) { return logits_new(s, images, s.metadata().num_classes); },
          py::arg("images"), "float32 logits [C,H,W] / [B,C,H,W], in a new array.")
      .def(
          "output_shape",
          [](const ifa_rt::Segmenter& s, const std::vector<py::ssize_t>& shape, bool logits) {
            return output_shape(shape, logits, s.metadata().num_classes);
          },
          py::arg("input_shape"), py::arg("logits") = false, "The result's shape for an input of this shape.")
      .def("segment_into", &segment_into<ifa_rt::Segmenter>, py::arg("images"), py::arg("out"),
           "Labels of uint8 [H,W,3]/[B,H,W,3] images into `out` (uint8, C-contiguous).")
      .def("segment_list", &segment_list<ifa_rt::Segmenter>, py::arg("images"), py::arg("outs"),
           "Labels of a list of [H,W,3] images of any sizes into `outs`.")
      .def("logits_into", &logits_into<ifa_rt::Segmenter>, py::arg("images"), py::arg("out"),
           "float32 logits [B,C,H,W] into `out`.")
      .def("segment_device", &segment_device<ifa_rt::Segmenter>, py::arg("images"), py::arg("out"), py::arg("out_size"),
           py::arg("stream"),
           "Labels of device images into device memory at `out`, ordered on the cudaStream_t `stream`.")
      .def("logits_device", &logits_device<ifa_rt::Segmenter>, py::arg("images"), py::arg("out"), py::arg("out_size"),
           py::arg("stream"), "float32 logits of device images into device memory at `out`, ordered on `stream`.")
      .def(
          "plan", [](const ifa_rt::Segmenter& s) { return plan_dict(without_gil([&] { return s.plan(); })); },
          "The preallocated buffers.")
      .def(
          "stats", [](const ifa_rt::Segmenter& s) { return stats_dict(without_gil([&] { return s.stats(); })); },
          "Counters and latency.")
      .def_property_readonly(
          "metadata_json", [](const ifa_rt::Segmenter& s) { return s.metadata().json; },
          "The artifact's ifa_rt.json text.")
      .def_property_readonly(
          "num_classes", [](const ifa_rt::Segmenter& s) { return s.metadata().num_classes; },
          "Number of classes (channels of the logits).")
      // A copy: the fields are writable from Python, and the engine's own must not change.
      .def_property_readonly(
          "options", [](const ifa_rt::Segmenter& s) { return s.options(); }, "A copy of the options after resolution.")
      .def_property_readonly("path", &ifa_rt::Segmenter::path, "The artifact path.");

  py::class_<ifa_rt::SegmenterPool>(m, "SegmenterPool", "N engines; each call runs on an idle one.")
      .def(py::init([](const std::string& path, const ifa_rt::Options& o, int size) {
             py::gil_scoped_release release;
             return new ifa_rt::SegmenterPool(path, o, size);
           }),
           py::arg("path"), py::arg("options"), py::arg("size"), "Build `size` engines (GIL released).")
      .def("segment", &segment_new<ifa_rt::SegmenterPool>, py::arg("images"),
           "Labels in a new array, on an idle engine.")
      .def(
          "logits",
          [](ifa_rt::SegmenterPool& p, const py::array& images) {
            return logits_new(p, images, p.engine(0).metadata().num_classes);
          },
          py::arg("images"), "Logits in a new array, on an idle engine.")
      .def(
          "output_shape",
          [](ifa_rt::SegmenterPool& p, const std::vector<py::ssize_t>& shape, bool logits) {
            return output_shape(shape, logits, p.engine(0).metadata().num_classes);
          },
          py::arg("input_shape"), py::arg("logits") = false, "The result's shape for an input of this shape.")
      .def("segment_into", &segment_into<ifa_rt::SegmenterPool>, py::arg("images"), py::arg("out"),
           "Labels into `out`, on an idle engine.")
      .def("segment_list", &segment_list<ifa_rt::SegmenterPool>, py::arg("images"), py::arg("outs"),
           "Labels of a list of images, on an idle engine.")
      .def("logits_into", &logits_into<ifa_rt::SegmenterPool>, py::arg("images"), py::arg("out"),
           "Logits into `out`, on an idle engine.")
      .def("segment_device", &segment_device<ifa_rt::SegmenterPool>, py::arg("images"), py::arg("out"),
           py::arg("out_size"), py::arg("stream"), "Device-memory labels, on an idle engine.")
      .def("logits_device", &logits_device<ifa_rt::SegmenterPool>, py::arg("images"), py::arg("out"),
           py::arg("out_size"), py::arg("stream"), "Device-memory logits, on an idle engine.")
      .def_property_readonly("size", &ifa_rt::SegmenterPool::size, "Number of engines.")
      .def("engine", &ifa_rt::SegmenterPool::engine, py::arg("index"), py::return_value_policy::reference_internal,
           "The index-th engine.");

  py::class_<PyBatcher>(m, "Batcher", "Dynamic micro-batching over a Segmenter or SegmenterPool (ifa_rt::Batcher).")
      .def(py::init(&make_batcher<ifa_rt::Segmenter>), py::arg("engine"), py::arg("options"), py::keep_alive<1, 2>(),
           "One worker over a Segmenter.")
      .def(py::init(&make_batcher<ifa_rt::SegmenterPool>), py::arg("engine"), py::arg("options"),
           py::keep_alive<1, 2>(), "One worker per engine of a pool.")
      .def("submit", &batcher_submit, py::arg("image"), py::arg("out"), py::arg("done"),
           "Queue one uint8 [H,W,3] image; labels go to `out`.\nThen done(error or None) runs on a worker.")
      .def("close", &PyBatcher::close, py::arg("drain") = true,
           "Stop accepting; drain (run queued requests) or cancel them; join the workers (GIL released).")
      .def_property_readonly(
          "closed", [](const PyBatcher& b) { return b.batcher->closed(); }, "True once closing.")
      .def(
          "stats", [](const PyBatcher& b) { return batcher_stats(b.batcher->stats()); }, "Batching counters.")
      .def_property_readonly(
          "max_batch", [](const PyBatcher& b) { return b.batcher->options().max_batch; },
          "Most requests per batch (resolved).")
      .def_property_readonly(
          "max_delay_us", [](const PyBatcher& b) { return b.batcher->options().max_delay_us; },
          "Longest wait of the oldest request for company, in microseconds.");
}
