#pragma once
// Checks a zip archive (a TorchScript artifact or an AOTInductor .pt2 package) against its own
// file before LibTorch reads it: every record inside the file, sizes consistent, and stored
// records' CRC-32 right. LibTorch checks none of this (its miniz skips CRCs), so a corrupt
// length or a flipped bit used to reach its unpickler, which asked for up to 10.7 GB first.
#include <string>

namespace ifa_rt::detail {

/// Throws ifa_rt::Error with a one-line reason when `path` is not a consistent zip archive.
/// CRCs are verified when the library was built with zlib (checks_crc()).
void check_zip(const std::string& path);

/// True when check_zip verifies CRC-32s (zlib was found at build time).
bool checks_crc();

}  // namespace ifa_rt::detail
