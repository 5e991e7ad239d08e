// AOTInductor package facts and the machine check (pure logic; the engine itself is tested
// from Python on a real compiled package, tests/test_aoti.py).
#include "check.h"
#include "package.h"

using namespace ifa_rt;
using namespace ifa_rt::detail;

namespace {

std::string meta(const std::string& aoti) { return "{\"format_version\": 1, \"aoti\": " + aoti + "}"; }

const char* kGood =
    R"({"device": "cpu", "cpu_isa": "avx512 avx512_vnni", "machine": "x86_64", "torch_version": "2.13.0+cpu",
        "precision": "fp32", "fallback": "ifa_rt/fallback.ifa.pt", "threads": 2,
        "buckets": [[1, 360, 480], [2, 360, 480]]})";

}  // namespace

int main(int argc, char** argv) {
  return check::run(argc, argv, [] {
    CHECK(is_package_path("a/b/model.pt2"));
    CHECK(!is_package_path("model.ifa.pt"));
    CHECK(!is_package_path("pt2"));
    CHECK(package_model_name({2, 360, 480}) == "labels_2x360x480");

    PackageInfo p = parse_package_info(meta(kGood));
    CHECK(p.cpu_isa == "avx512 avx512_vnni");
    CHECK_EQ(p.threads, 2);
    CHECK_EQ(p.buckets.size(), size_t{2});
    CHECK_EQ(p.buckets[1].batch, int64_t{2});
    CHECK(p.fallback == "ifa_rt/fallback.ifa.pt");

    CHECK_THROWS(Error, parse_package_info("{\"format_version\": 1}"),
                 "metadata 'ifa_rt.json': 'aoti': expected an object (an AOTInductor package), got nothing");
    CHECK_THROWS(Error, parse_package_info(meta(R"({"device": 3})")),
                 "metadata 'ifa_rt.json': 'aoti.device': expected a string, got 3");
    std::string no_buckets = kGood;
    no_buckets.replace(no_buckets.find("[[1, 360, 480], [2, 360, 480]]"), 30, "[]");
    CHECK_THROWS(Error, parse_package_info(meta(no_buckets)),
                 "metadata 'ifa_rt.json': 'aoti.buckets': expected a non-empty list of [batch, height, width], got []");
    std::string bad_bucket = kGood;
    bad_bucket.replace(bad_bucket.find("[1, 360, 480]"), 13, "[0, 360, 480]");
    CHECK_THROWS(Error, parse_package_info(meta(bad_bucket)),
                 "metadata 'ifa_rt.json': 'aoti.buckets': expected positive integers, got [0, 360, 480]");
    CHECK_THROWS_CONTAINS(Error, parse_package_info("{oops"), "metadata 'ifa_rt.json': not valid JSON");

    const std::set<std::string> avx512_vnni{"avx2",     "fma",      "avx512f",    "avx512dq",
                                            "avx512vl", "avx512bw", "avx512_vnni"};
    const std::set<std::string> avx2_only{"avx2", "fma"};
    CHECK(package_mismatch(p, avx512_vnni, "x86_64", "2.13.0+cpu").empty());
    CHECK(package_mismatch(p, avx512_vnni, "x86_64", "2.13.1").empty());  // same minor version
    CHECK(package_mismatch(p, avx2_only, "x86_64", "2.13.0+cpu") ==
          "it was compiled for CPU ISA 'avx512 avx512_vnni', and this CPU lacks 'avx512f'");
    CHECK(package_mismatch(p, avx512_vnni, "aarch64", "2.13.0+cpu") ==
          "it was compiled for a x86_64 machine, this one is aarch64");
    CHECK(package_mismatch(p, avx512_vnni, "x86_64", "2.11.0+cu130") ==
          "it was compiled with torch 2.13.0+cpu, this runtime has torch 2.11.0+cu130");
    PackageInfo cuda = p;
    cuda.device = "cuda";
    CHECK(package_mismatch(cuda, avx2_only, "x86_64", "2.13.0").empty());  // no CPU ISA check
    CHECK(package_mismatch(cuda, avx512_vnni, "x86_64", "2.11.0+cu130") ==
          "it was compiled with torch 2.13.0+cpu, this runtime has torch 2.11.0+cu130");
    PackageInfo mps = p;
    mps.device = "mps";
    CHECK(package_mismatch(mps, avx512_vnni, "x86_64", "2.13.0") ==
          "it was compiled for device 'mps'; this runtime runs CPU and CUDA packages");
    // Unknown flags (no /proc/cpuinfo) cannot be checked: the package is tried.
    CHECK(package_mismatch(p, {}, "x86_64", "2.13.0").empty());
    // This machine's facts are readable on Linux.
    CHECK(!host_machine().empty());
  });
}
