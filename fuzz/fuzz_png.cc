// libFuzzer target: the PNG fast path (pipeline/png_inflate.h) against libpng alone.
//
// Every chunk's CRC is recomputed first, so that mutations reach the chunk parser and the
// inflater instead of stopping at a checksum. When the fast path takes an input, the pipeline must
// give exactly what it gives without it: the same JPEG, or the same refusal.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "pipeline/image_codec.h"
#include "pipeline/png_inflate.h"

namespace {

// `data` with the CRC of every whole chunk after the signature made right.
std::string WithCorrectCrcs(const uint8_t* data, size_t size) {
  std::string png(reinterpret_cast<const char*>(data), size);
  for (size_t at = 8; at + 12 <= png.size();) {
    const auto* p = reinterpret_cast<const unsigned char*>(png.data()) + at;
    const size_t length = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    if (length > png.size() - at - 12) break;
    const uLong crc = crc32(0, p + 4, static_cast<uInt>(length + 4));
    for (int i = 0; i < 4; ++i) png[at + 8 + length + i] = static_cast<char>(crc >> (24 - 8 * i));
    at += 12 + length;
  }
  return png;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool ready = imgproc::pipeline::InitCodec().ok();
  if (!ready) __builtin_trap();
  const std::string png = WithCorrectCrcs(data, size);
  if (!imgproc::pipeline::InflatePng(png, 1 << 22)) return 0;
  imgproc::pipeline::CodecLimits fast;
  fast.max_pixels = 1 << 20;  // small images keep each run fast
  imgproc::pipeline::CodecLimits plain = fast;
  plain.png_fast_path = false;
  const auto a = imgproc::pipeline::CompressToJpeg(png, fast);
  const auto b = imgproc::pipeline::CompressToJpeg(png, plain);
  if (a.ok() != b.ok()) __builtin_trap();
  if (a.ok() && a->bytes != b->bytes) __builtin_trap();
  return 0;
}
