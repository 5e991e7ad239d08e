// ifa_rt::Options and ifa_rt::BatcherOptions as typed Python classes: a keyword constructor and
// read-write fields. Python values are converted here, once, with typed errors
// (`Options: 'threads': expected an int, got bool`); value limits stay in Options::validate().
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <functional>
#include <string>
#include <vector>

#include "bindings.h"
#include "ifa_rt/batcher.h"
#include "ifa_rt/segmenter.h"

namespace py = pybind11;
using ifa_rt::Options;

namespace {

std::string type_name(py::handle v) { return py::str(py::type::handle_of(v).attr("__name__")); }

[[noreturn]] void type_error(const std::string& owner, const std::string& key, const std::string& what, py::handle v) {
  throw py::type_error(owner + ": '" + key + "': expected " + what + ", got " + type_name(v));
}

// numpy.bool_ and other one-byte booleans with a dtype of kind 'b'.
bool is_numpy_bool(py::handle v) {
  return py::hasattr(v, "dtype") && py::hasattr(v.attr("dtype"), "kind") &&
         v.attr("dtype").attr("kind").cast<std::string>() == "b";
}

// An int (Python or numpy, never a bool: True is an int to Python but not a count).
int64_t to_int64(const std::string& owner, const std::string& key, py::handle v) {
  if (py::isinstance<py::bool_>(v) || is_numpy_bool(v) || !PyIndex_Check(v.ptr())) type_error(owner, key, "an int", v);
  py::int_ index = py::reinterpret_steal<py::int_>(PyNumber_Index(v.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long value = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0)
    throw py::value_error(owner + ": '" + key + "': expected a 64-bit integer, got " + std::string(py::str(v)));
  return value;
}

// An int field: its value names the field's side of the range instead of wrapping around.
int to_int(const std::string& key, py::handle v) {
  const int64_t value = to_int64("Options", key, v);
  if (value < INT_MIN || value > INT_MAX)
    throw py::value_error("Options: '" + key + "': expected an integer in [" + std::to_string(INT_MIN) + ", " +
                          std::to_string(INT_MAX) + "], got " + std::to_string(value));
  return static_cast<int>(value);
}

bool to_bool(const std::string& key, py::handle v) {
  if (py::isinstance<py::bool_>(v) || is_numpy_bool(v)) return PyObject_IsTrue(v.ptr()) == 1;
  type_error("Options", key, "a bool", v);
}

std::string to_str(const std::string& key, py::handle v) {
  if (!py::isinstance<py::str>(v)) type_error("Options", key, "a str", v);
  return v.cast<std::string>();
}

std::vector<ifa_rt::Shape> to_shapes(py::handle v) {
  if (py::isinstance<py::str>(v) || py::isinstance<py::bytes>(v) || !PySequence_Check(v.ptr()))
    type_error("Options", "shapes", "a list of (height, width) pairs", v);
  std::vector<ifa_rt::Shape> shapes;
  for (py::handle item : py::reinterpret_borrow<py::sequence>(v)) {
    const bool pair = !py::isinstance<py::str>(item) && PySequence_Check(item.ptr()) && py::len(item) == 2;
    auto bad = [&] {
      throw py::type_error("Options: 'shapes': expected a list of (height, width) int pairs, got " +
                           std::string(py::repr(item)));
    };
    if (!pair) bad();
    auto seq = py::reinterpret_borrow<py::sequence>(item);
    for (py::handle side : seq)
      if (py::isinstance<py::bool_>(side) || !PyIndex_Check(side.ptr())) bad();
    shapes.push_back({to_int64("Options", "shapes", seq[0]), to_int64("Options", "shapes", seq[1])});
  }
  return shapes;
}

py::list shape_list(const std::vector<ifa_rt::Shape>& shapes) {
  py::list l;
  for (const auto& s : shapes) l.append(py::make_tuple(s.height, s.width));
  return l;
}

// One entry per field, in declaration order: how Python reads and writes it.
struct Field {
  const char* name;
  std::function<py::object(const Options&)> get;
  std::function<void(Options&, py::handle)> set;
};

// The field `member` of Options read and written as a Python int, bool or str.
Field int_field(const char* name, int Options::*member) {
  return {name, [member](const Options& o) { return py::object(py::int_(o.*member)); },
          [name, member](Options& o, py::handle v) { o.*member = to_int(name, v); }};
}

Field bool_field(const char* name, bool Options::*member) {
  return {name, [member](const Options& o) { return py::object(py::bool_(o.*member)); },
          [name, member](Options& o, py::handle v) { o.*member = to_bool(name, v); }};
}

Field str_field(const char* name, std::string Options::*member) {
  return {name, [member](const Options& o) { return py::object(py::str(o.*member)); },
          [name, member](Options& o, py::handle v) { o.*member = to_str(name, v); }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> all = {
      str_field("device", &Options::device),
      {"precision", [](const Options& o) { return py::object(py::str(ifa_rt::to_string(o.precision))); },
       [](Options& o, py::handle v) {
         o.precision = ifa_rt::Options::from_map({{"precision", to_str("precision", v)}}).precision;
       }},
      {"max_batch", [](const Options& o) { return py::object(py::int_(o.max_batch)); },
       [](Options& o, py::handle v) { o.max_batch = to_int64("Options", "max_batch", v); }},
      {"shapes", [](const Options& o) { return py::object(shape_list(o.shapes)); },
       [](Options& o, py::handle v) { o.shapes = to_shapes(v); }},
      int_field("threads", &Options::threads),
      bool_field("strict", &Options::strict),
      bool_field("plan_logits", &Options::plan_logits),
      bool_field("channels_last", &Options::channels_last),
      bool_field("tf32", &Options::tf32),
      str_field("runtime", &Options::runtime),
      bool_field("optimize", &Options::optimize),
      int_field("warmup", &Options::warmup),
      int_field("shape_cache", &Options::shape_cache),
      int_field("learn_shapes", &Options::learn_shapes),
      int_field("trim_heap_mb", &Options::trim_heap_mb),
      int_field("mmap_threshold_kb", &Options::mmap_threshold_kb),
      bool_field("batch_invariant", &Options::batch_invariant),
      str_field("fuser", &Options::fuser),
  };
  return all;
}

const Field& field(const std::string& name) {
  for (const Field& f : fields())
    if (name == f.name) return f;
  std::string known;
  for (const Field& f : fields()) known += (known.empty() ? "" : ", ") + std::string(f.name);
  throw py::type_error("Options: unknown option '" + name + "' (known: " + known + ")");
}

// Keyword values over `base`; None keeps base's value. Validated as a whole.
Options with_values(Options base, const py::kwargs& values) {
  for (auto [key, value] : values)
    if (!value.is_none()) field(py::str(key)).set(base, value);
  base.validate();
  return base;
}

py::dict as_dict(const Options& o) {
  py::dict d;
  for (const Field& f : fields()) d[f.name] = f.get(o);
  return d;
}

ifa_rt::BatcherOptions batcher_options(const py::kwargs& values) {
  ifa_rt::BatcherOptions o;
  for (auto [key, value] : values) {
    const std::string name = py::str(key);
    if (value.is_none()) continue;
    if (name == "max_batch")
      o.max_batch = to_int64("BatcherOptions", name, value);
    else if (name == "max_delay_us")
      o.max_delay_us = to_int64("BatcherOptions", name, value);
    else
      throw py::type_error("BatcherOptions: unknown option '" + name + "' (known: max_batch, max_delay_us)");
  }
  o.validate();
  return o;
}

}  // namespace

void bind_options(py::module_& m) {
  auto options = py::class_<Options>(m, "Options",
                                     "How a Segmenter is built (ifa_rt::Options).\n"
                                     "Typed fields; defaults, conversion and limits live once, in C++.");
  options
      .def(py::init([](const py::kwargs& values) { return with_values(Options{}, values); }),
           "Options(**fields): the defaults with these fields set (None keeps a default).\n"
           "TypeError: a wrong type or an unknown name; ValueError: a bad value.")
      .def_static("from_map", &Options::from_map, py::arg("values"),
                  "Options from {name: string value} (tools, config files).\n"
                  "Unknown names and bad values raise ValueError.")
      .def(
          "replace", [](const Options& o, const py::kwargs& values) { return with_values(o, values); },
          "A validated copy with these fields changed.")
      .def("validate", &Options::validate, "Raise ValueError naming the first bad field.")
      .def("to_dict", &as_dict, "Every field by name.")
      .def_static(
          "field_names",
          [] {
            py::list names;
            for (const Field& f : fields()) names.append(f.name);
            return names;
          },
          "The field names, in declaration order.")
      .def("__eq__", [](const Options& a, const Options& b) { return as_dict(a).equal(as_dict(b)); })
      .def("__repr__", [](const Options& o) {
        std::string text = "Options(";
        bool first = true;
        for (const Field& f : fields()) {
          text += (first ? "" : ", ") + std::string(f.name) + "=" + std::string(py::repr(f.get(o)));
          first = false;
        }
        return text + ")";
      });
  for (const Field& f : fields())
    options.def_property(
        f.name, [&f](const Options& o) { return f.get(o); }, [&f](Options& o, py::handle v) { f.set(o, v); },
        "See ifa_rt::Options in segmenter.h.");

  py::class_<ifa_rt::BatcherOptions>(m, "BatcherOptions", "How a Batcher forms batches (ifa_rt::BatcherOptions).")
      .def(py::init(&batcher_options),
           "BatcherOptions(max_batch=0, max_delay_us=0): validated; TypeError / ValueError as Options.")
      .def_readonly("max_batch", &ifa_rt::BatcherOptions::max_batch)
      .def_readonly("max_delay_us", &ifa_rt::BatcherOptions::max_delay_us);
}

py::list shapes_to_list(const std::vector<ifa_rt::Shape>& shapes) { return shape_list(shapes); }
