#pragma once
// Minimal test helpers: CHECK macros that count failures, fixture loading. A test binary
// takes the fixture folder (written by tests/fixtures/make_fixtures.py) as its argument and
// exits non-zero when any check failed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "ifa_rt/segmenter.h"

namespace check {

inline int& failures() {
  static int n = 0;
  return n;
}
inline std::string& fixtures() {
  static std::string dir;
  return dir;
}

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::cerr << file << ":" << line << ": FAILED: " << what << "\n";
}

#define CHECK(cond)                                        \
  do {                                                     \
    if (!(cond)) ::check::fail(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_EQ(a, b)                                                                                    \
  do {                                                                                                    \
    auto _va = (a);                                                                                       \
    auto _vb = (b);                                                                                       \
    if (!(_va == _vb))                                                                                    \
      ::check::fail(__FILE__, __LINE__,                                                                   \
                    std::string(#a " == " #b ": ") + std::to_string(_va) + " vs " + std::to_string(_vb)); \
  } while (0)

// Runs `body`, which must throw E with a message equal to `message` (or containing it when
// `exact` is false).
template <class E>
void expect_throw(const char* file, int line, const std::function<void()>& body, const std::string& message,
                  bool exact = true) {
  try {
    body();
  } catch (const E& e) {
    std::string got = e.what();
    bool ok = exact ? got == message : got.find(message) != std::string::npos;
    if (!ok) fail(file, line, "message:\n  got:  " + got + "\n  want: " + message);
    return;
  } catch (const std::exception& e) {
    fail(file, line, std::string("wrong exception type: ") + e.what());
    return;
  }
  fail(file, line, "no exception; wanted: " + message);
}
#define CHECK_THROWS(E, body, message) \
  ::check::expect_throw<E>(            \
      __FILE__, __LINE__, [&] { body; }, message)
#define CHECK_THROWS_CONTAINS(E, body, message) \
  ::check::expect_throw<E>(                     \
      __FILE__, __LINE__, [&] { body; }, message, false)

// Ends the process (exit 3) if it still runs after `seconds`: a deadlock fails the test at
// once instead of hanging until ctest's timeout.
inline void watchdog(const char* test, int seconds) {
  std::thread([test, seconds] {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    std::fprintf(stderr, "%s: watchdog: still running after %d s (deadlock?)\n", test, seconds);
    std::_Exit(3);
  }).detach();
}

inline std::string path(const std::string& name) { return fixtures() + "/" + name; }

template <class T>
std::vector<T> read_bin(const std::string& name) {
  std::ifstream f(path(name), std::ios::binary);
  if (!f) {
    std::cerr << "missing fixture " << path(name) << "\n";
    std::exit(2);
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

inline ifa_rt::TensorView view(const std::vector<uint8_t>& data, std::vector<int64_t> shape) {
  ifa_rt::TensorView v;
  v.data = data.data();
  v.shape = std::move(shape);
  return v;
}

inline int run(int argc, char** argv, const std::function<void()>& tests) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " FIXTURE_DIR\n";
    return 2;
  }
  fixtures() = argv[1];
  try {
    tests();
  } catch (const std::exception& e) {
    fail(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
  }
  if (failures() == 0) std::cout << "all checks passed\n";
  return failures() == 0 ? 0 : 1;
}

}  // namespace check
