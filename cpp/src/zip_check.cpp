// Zip structure per PKWARE APPNOTE 6.3 (sections 4.3.7, 4.3.12, 4.3.14-16, 4.5.3): the end of
// central directory (EOCD, zip64 where the writer needed it), one central header per record,
// each pointing at a local header followed by the record's bytes.
#include "zip_check.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <vector>

#ifdef IFA_RT_WITH_ZLIB
#include <zlib.h>
#endif

#include "ifa_rt/segmenter.h"

namespace ifa_rt::detail {
namespace {

constexpr uint32_t kEocd = 0x06054b50, kZip64Eocd = 0x06064b50, kZip64Locator = 0x07064b50;
constexpr uint32_t kCentral = 0x02014b50, kLocal = 0x04034b50;
constexpr size_t kEocdSize = 22, kLocatorSize = 20, kZip64EocdSize = 56, kCentralSize = 46, kLocalSize = 30;
constexpr int64_t kMaxRecords = 1 << 20;  // far beyond any artifact; bounds the loop

uint64_t le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct File {
  std::ifstream in;
  uint64_t size = 0;

  std::vector<uint8_t> read(uint64_t offset, uint64_t n) {
    std::vector<uint8_t> buf(n);
    in.seekg(static_cast<std::streamoff>(offset));
    if (!in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n)))
      throw Error("a read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " failed");
    return buf;
  }
};

// A record name as it may be quoted in a one-line error: bounded, control bytes replaced.
std::string printable(const std::string& name) {
  std::string out = name.substr(0, 200);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return name.size() > 200 ? out + "..." : out;
}

[[noreturn]] void corrupt(const std::string& what) { throw Error(what + " (a truncated or corrupt file)"); }

struct Directory {
  uint64_t records = 0, offset = 0, size = 0;
};

// Finds the EOCD in the file's last 64 KiB + 22 bytes (the comment is at most 65535 bytes).
Directory find_directory(File& f) {
  if (f.size < kEocdSize)
    corrupt("zip: expected an end-of-central-directory record, got a " + std::to_string(f.size) + "-byte file");
  const uint64_t tail = std::min<uint64_t>(f.size, kEocdSize + 65535);
  const std::vector<uint8_t> buf = f.read(f.size - tail, tail);
  for (int64_t i = static_cast<int64_t>(tail - kEocdSize); i >= 0; --i) {
    const uint8_t* p = buf.data() + i;
    if (le(p, 4) != kEocd || i + kEocdSize + le(p + 20, 2) != tail) continue;
    const uint64_t eocd_at = f.size - tail + static_cast<uint64_t>(i);
    Directory d{le(p + 10, 2), le(p + 16, 4), le(p + 12, 4)};
    const bool zip64 = d.records == 0xFFFF || d.offset == 0xFFFFFFFF || d.size == 0xFFFFFFFF;
    if (zip64) {
      if (eocd_at < kLocatorSize) corrupt("zip: expected a zip64 locator before the end record, got none");
      const std::vector<uint8_t> loc = f.read(eocd_at - kLocatorSize, kLocatorSize);
      if (le(loc.data(), 4) != kZip64Locator) corrupt("zip: expected a zip64 locator before the end record, got none");
      const uint64_t at = le(loc.data() + 8, 8);
      if (at > eocd_at || eocd_at - at < kZip64EocdSize) corrupt("zip: zip64 end record outside the file");
      const std::vector<uint8_t> e = f.read(at, kZip64EocdSize);
      if (le(e.data(), 4) != kZip64Eocd) corrupt("zip: zip64 end record has a wrong signature");
      d = Directory{le(e.data() + 32, 8), le(e.data() + 48, 8), le(e.data() + 40, 8)};
      if (d.offset > at || d.size > at - d.offset) corrupt("zip: central directory outside the file");
    } else if (d.offset > eocd_at || d.size > eocd_at - d.offset) {
      corrupt("zip: central directory outside the file");
    }
    return d;
  }
  corrupt("zip: expected an end-of-central-directory record, got none");
}

// The zip64 extended-information extra field replaces the 32-bit fields that read 0xFFFFFFFF.
void apply_zip64(const uint8_t* extra, size_t n, uint64_t* usize, uint64_t* csize, uint64_t* local) {
  for (size_t i = 0; i + 4 <= n;) {
    const uint64_t id = le(extra + i, 2), len = le(extra + i + 2, 2);
    if (i + 4 + len > n) break;
    if (id == 0x0001) {
      const uint8_t* p = extra + i + 4;
      size_t left = len;
      for (uint64_t* field : {usize, csize, local}) {
        if (*field != 0xFFFFFFFF) continue;
        if (left < 8) corrupt("zip: zip64 extra field too short");
        *field = le(p, 8);
        p += 8;
        left -= 8;
      }
      return;
    }
    i += 4 + len;
  }
}

uint32_t crc_of(File& f, uint64_t offset, uint64_t n) {
#ifdef IFA_RT_WITH_ZLIB
  uLong crc = crc32(0L, Z_NULL, 0);
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<uint8_t> buf(std::min(n, kChunk));
  f.in.seekg(static_cast<std::streamoff>(offset));
  for (uint64_t done = 0; done < n;) {
    const uint64_t step = std::min(kChunk, n - done);
    if (!f.in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(step)))
      corrupt("zip: a record could not be read");
    crc = crc32(crc, buf.data(), static_cast<uInt>(step));
    done += step;
  }
  return static_cast<uint32_t>(crc);
#else
  (void)f, (void)offset, (void)n;
  return 0;
#endif
}

}  // namespace

bool checks_crc() {
#ifdef IFA_RT_WITH_ZLIB
  return true;
#else
  return false;
#endif
}

void check_zip(const std::string& path) {
  File f;
  f.in.open(path, std::ios::binary | std::ios::ate);
  if (!f.in) throw Error("no such file or not readable");
  f.size = static_cast<uint64_t>(f.in.tellg());
  const Directory d = find_directory(f);
  if (d.records > kMaxRecords || d.records * kCentralSize > d.size)
    corrupt("zip: expected at most " + std::to_string(d.size / kCentralSize) + " records in a " +
            std::to_string(d.size) + "-byte directory, got " + std::to_string(d.records));
  const std::vector<uint8_t> dir = f.read(d.offset, d.size);
  size_t at = 0;
  for (uint64_t r = 0; r < d.records; ++r) {
    if (at + kCentralSize > dir.size() || le(&dir[at], 4) != kCentral)
      corrupt("zip: central directory entry " + std::to_string(r) + " is damaged");
    const uint8_t* c = &dir[at];
    const uint64_t method = le(c + 10, 2), crc = le(c + 16, 4);
    uint64_t csize = le(c + 20, 4), usize = le(c + 24, 4), local = le(c + 42, 4);
    const size_t name_len = le(c + 28, 2), extra_len = le(c + 30, 2), comment_len = le(c + 32, 2);
    if (at + kCentralSize + name_len + extra_len + comment_len > dir.size())
      corrupt("zip: central directory entry " + std::to_string(r) + " is damaged");
    const std::string name(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    apply_zip64(c + kCentralSize + name_len, extra_len, &usize, &csize, &local);
    at += kCentralSize + name_len + extra_len + comment_len;

    const std::string record = "zip: record " + std::to_string(r) + " ('" + printable(name) + "')";
    if (local > f.size || f.size - local < kLocalSize) corrupt(record + " starts past the end of the file");
    const std::vector<uint8_t> lh = f.read(local, kLocalSize);
    if (le(lh.data(), 4) != kLocal) corrupt(record + ": its local header has a wrong signature");
    const uint64_t data_at = local + kLocalSize + le(lh.data() + 26, 2) + le(lh.data() + 28, 2);
    if (data_at > f.size || csize > f.size - data_at)
      corrupt(record + " needs " + std::to_string(csize) + " bytes at offset " + std::to_string(data_at) +
              ", past the end of the " + std::to_string(f.size) + "-byte file");
    if (method == 0 && csize != usize)
      corrupt(record + ": stored, but its sizes differ (" + std::to_string(csize) + " vs " + std::to_string(usize) +
              ")");
    if (method == 0 && checks_crc() && crc_of(f, data_at, csize) != crc) corrupt(record + " fails its CRC-32 check");
  }
}

}  // namespace ifa_rt::detail
