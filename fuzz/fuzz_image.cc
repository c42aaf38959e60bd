// libFuzzer target: image decoding and encoding through the pipeline's entry points.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pipeline/image_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool ready = imgproc::pipeline::InitCodec().ok();
  if (!ready) __builtin_trap();
  imgproc::pipeline::CodecLimits limits;
  limits.max_pixels = 1 << 20;  // small images keep each run fast
  const auto result = imgproc::pipeline::CompressToJpeg(
      std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (result.ok()) {
    const auto& jpeg = result->bytes;
    if (jpeg.size() < 4 || static_cast<uint8_t>(jpeg[0]) != 0xFF ||
        static_cast<uint8_t>(jpeg[1]) != 0xD8) {
      __builtin_trap();
    }
    if (result->width <= 0 || result->height <= 0) __builtin_trap();
  } else if (result.status().message().empty()) {
    __builtin_trap();
  }
  // The resize path (shrink-on-load, premultiplied alpha, rotation in memory) and another encoder:
  // a small WebP that must fit its box.
  imgproc::request::OutputSettings thumb;
  thumb.format = imgproc::request::OutputFormat::kWebp;
  thumb.max_width = 64;
  thumb.max_height = 48;
  const auto small = imgproc::pipeline::Encode(
      std::string_view(reinterpret_cast<const char*>(data), size), thumb, limits);
  if (small.ok()) {
    if (small->bytes.size() < 12 || small->bytes.compare(0, 4, "RIFF") != 0) __builtin_trap();
    if (small->width <= 0 || small->width > 64 || small->height <= 0 || small->height > 48) {
      __builtin_trap();
    }
  } else if (small.status().message().empty()) {
    __builtin_trap();
  }
  return 0;
}
