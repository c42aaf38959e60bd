// The PNG fast path: a PNG's image data inflated by libdeflate ahead of libpng.
//
// Inflating the zlib stream is most of the cost of decoding a PNG photo (27 of 30 ms for a 2 MP
// RGB PNG here), libdeflate does it about twice as fast as zlib, and neither libpng nor libvips
// can use another inflater. So the PNG is rewritten with its image data already inflated, as
// "stored" (uncompressed) deflate blocks, which libpng then only copies. Every other chunk, the
// unfiltering and the whole interpretation of the pixels stay libpng's and libvips': the decoded
// pixels are the same.
#ifndef IMGPROC_PIPELINE_PNG_INFLATE_H_
#define IMGPROC_PIPELINE_PNG_INFLATE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace imgproc::pipeline {

// `png` with its IDAT chunks replaced by ones holding the same image data uncompressed.
//
// std::nullopt when the rewrite does not apply and the caller must decode `png` as it is: not a
// PNG, interlaced, the inflated data larger than `max_bytes` (it is held whole, where libpng
// streams rows), or anything not exactly right (a CRC, the stream, its size against the header,
// data after it): libpng then reports or tolerates it as it always does.
std::optional<std::string> InflatePng(std::string_view png, size_t max_bytes);

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_PNG_INFLATE_H_
