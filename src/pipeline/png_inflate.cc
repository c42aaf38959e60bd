#include "pipeline/png_inflate.h"

#include <libdeflate.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

namespace imgproc::pipeline {
namespace {

constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
// What a stored deflate block holds at most.
constexpr size_t kStoredBlockBytes = 65535;
// Each output IDAT chunk holds one stored block: chunk length, type and CRC (12 bytes), the
// block's header (5). The first one also starts the zlib stream (2), the last one ends it (4).
constexpr size_t kChunkOverhead = 12 + 5;
constexpr size_t kZlibHeaderBytes = 2;
constexpr size_t kAdlerBytes = 4;

uint32_t ReadBe32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void WriteBe32(unsigned char* p, uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

// The size of the filtered image data that IHDR describes (each row a filter byte and the packed
// samples), or 0 for what this rewrite leaves to libpng: interlacing, a size over `max_bytes`,
// and whatever libpng would refuse.
uint64_t FilteredBytes(const unsigned char* ihdr, size_t max_bytes) {
  const uint64_t width = ReadBe32(ihdr);
  const uint64_t height = ReadBe32(ihdr + 4);
  const int depth = ihdr[8];
  const int colour = ihdr[9];
  if (ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] != 0) return 0;  // compression, filter, interlace
  if (width == 0 || height == 0 || width > 0x7FFFFFFF || height > 0x7FFFFFFF) return 0;
  const bool wide = depth == 8 || depth == 16;
  const bool narrow = depth == 1 || depth == 2 || depth == 4 || depth == 8;
  int channels = 0;
  switch (colour) {
    case 0:  // grey
      channels = wide || narrow ? 1 : 0;
      break;
    case 2:  // RGB
      channels = wide ? 3 : 0;
      break;
    case 3:  // palette
      channels = narrow ? 1 : 0;
      break;
    case 4:  // grey and alpha
      channels = wide ? 2 : 0;
      break;
    case 6:  // RGBA
      channels = wide ? 4 : 0;
      break;
  }
  if (channels == 0) return 0;
  const uint64_t row = (width * static_cast<uint64_t>(channels * depth) + 7) / 8 + 1;
  if (height > max_bytes / row) return 0;
  return row * height;
}

}  // namespace

std::optional<std::string> InflatePng(std::string_view png, size_t max_bytes) {
  if (!png.starts_with(kSignature)) return std::nullopt;
  const auto* in = reinterpret_cast<const unsigned char*>(png.data());

  // The chunks: IHDR first, one run of IDAT chunks, up to IEND.
  uint64_t filtered = 0;
  size_t idat_begin = 0;  // the run of IDAT chunks is [idat_begin, idat_end)
  size_t idat_end = 0;
  size_t end = 0;      // just after IEND
  std::string stream;  // the IDAT chunks' data: one zlib stream
  for (size_t pos = kSignature.size(); end == 0;) {
    if (png.size() - pos < 12) return std::nullopt;
    const uint32_t length = ReadBe32(in + pos);
    if (length > 0x7FFFFFFF || png.size() - pos - 12 < length) return std::nullopt;
    const std::string_view type = png.substr(pos + 4, 4);
    const size_t next = pos + 12 + length;
    if (pos == kSignature.size()) {
      if (type != "IHDR" || length != 13) return std::nullopt;
      filtered = FilteredBytes(in + pos + 8, max_bytes);
      if (filtered == 0) return std::nullopt;
    } else if (type == "IDAT") {
      if (idat_end != 0 && idat_end != pos) return std::nullopt;  // a second run
      if (libdeflate_crc32(0, in + pos + 4, length + 4) != ReadBe32(in + pos + 8 + length)) {
        return std::nullopt;
      }
      if (idat_begin == 0) idat_begin = pos;
      stream.append(png.substr(pos + 8, length));
      idat_end = next;
    } else if (type == "IEND") {
      end = next;
    }
    pos = next;
  }
  if (idat_begin == 0) return std::nullopt;

  // The output: what comes before the IDAT chunks, one chunk per stored block, what comes after.
  const size_t blocks = (filtered + kStoredBlockBytes - 1) / kStoredBlockBytes;
  const size_t suffix = end - idat_end;
  const size_t total =
      idat_begin + kZlibHeaderBytes + blocks * kChunkOverhead + filtered + kAdlerBytes + suffix;
  std::string rewritten(total, '\0');
  auto* out = reinterpret_cast<unsigned char*>(rewritten.data());

  // Inflated into the output's tail, ending where the last block's data will end (before the
  // stream's Adler-32 and the chunk's CRC). Every block's final place is then at or before where
  // it was inflated to, and before every later block's data, so the blocks slide forward into
  // place one by one, in a single buffer.
  size_t from = total - suffix - 4 - kAdlerBytes - filtered;
  const std::unique_ptr<libdeflate_decompressor, decltype(&libdeflate_free_decompressor)> inflater(
      libdeflate_alloc_decompressor(), &libdeflate_free_decompressor);
  if (inflater == nullptr) return std::nullopt;
  size_t stream_used = 0;
  size_t inflated = 0;
  if (libdeflate_zlib_decompress_ex(inflater.get(), stream.data(), stream.size(), out + from,
                                    filtered, &stream_used, &inflated) != LIBDEFLATE_SUCCESS ||
      stream_used != stream.size() || inflated != filtered) {
    return std::nullopt;
  }
  std::string().swap(stream);
  const uint32_t adler = libdeflate_adler32(1, out + from, filtered);

  std::memcpy(out, in, idat_begin);
  size_t at = idat_begin;  // where the next chunk starts
  for (size_t i = 0; i < blocks; ++i) {
    const size_t n = std::min<uint64_t>(kStoredBlockBytes, filtered - i * kStoredBlockBytes);
    const bool first = i == 0;
    const bool last = i + 1 == blocks;
    const size_t length = (first ? kZlibHeaderBytes : 0) + 5 + n + (last ? kAdlerBytes : 0);
    unsigned char* chunk = out + at;
    unsigned char* p = chunk + 8;
    if (first) {
      *p++ = 0x78;  // deflate with a 32 KiB window; with the next byte, a multiple of 31
      *p++ = 0x01;
    }
    *p++ = last ? 1 : 0;  // BFINAL on the last block; BTYPE 00, stored
    p[0] = static_cast<unsigned char>(n);
    p[1] = static_cast<unsigned char>(n >> 8);
    p[2] = static_cast<unsigned char>(~n);
    p[3] = static_cast<unsigned char>(~n >> 8);
    p += 4;
    std::memmove(p, out + from, n);
    p += n;
    from += n;
    if (last) {
      WriteBe32(p, adler);
      p += kAdlerBytes;
    }
    WriteBe32(chunk, static_cast<uint32_t>(length));
    std::copy_n("IDAT", 4, chunk + 4);  // the chunk type, without its terminating NUL
    WriteBe32(p, libdeflate_crc32(0, chunk + 4, length + 4));
    at += 12 + length;
  }
  std::memcpy(out + at, in + idat_end, suffix);
  return rewritten;
}

}  // namespace imgproc::pipeline
