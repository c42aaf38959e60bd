// The JPEG fast path: a 4:2:0 YCbCr JPEG re-quantised to the standard tables of another quality
// in the DCT domain, with libjpeg-turbo's coefficient API.
//
// Decoding to pixels and encoding again costs an IDCT, colour conversion, upsampling,
// downsampling and an FDCT per block; here each coefficient is only rescaled from its source
// quantiser to the target one. The result is a baseline JPEG with optimised Huffman tables and no
// metadata, like the libvips path produces, of the same pixel dimensions. The symbol counts for
// the optimal tables are gathered while rescaling, which saves libjpeg's counting pass.
#ifndef IMGPROC_PIPELINE_JPEG_REQUANTIZE_H_
#define IMGPROC_PIPELINE_JPEG_REQUANTIZE_H_

#include <optional>
#include <string>
#include <string_view>

namespace imgproc::pipeline {

// How the output's optimal Huffman tables are found; both give the same bytes.
enum class HuffmanTables {
  kCountedWhileRescaling,  // one coding pass: what the pipeline uses
  kLibjpegTwoPass,         // libjpeg's optimize_coding (a counting pass, then the coding pass)
};

// Re-encodes `jpeg` at `quality` (IJG standard tables) without leaving the DCT domain.
//
// std::nullopt when the fast path does not apply and the caller must decode and encode instead:
// not 8-bit 4:2:0 YCbCr (grey, CMYK, 4:4:4 and 4:2:2 inputs: keeping their sampling would give a
// different, larger output than the pixel path), or anything libjpeg reports, warnings included
// (a truncated or damaged file is then refused by the pixel path with its own message). The
// caller checks pixel limits, orientation and colour profile before.
std::optional<std::string> RequantizeJpeg(
    std::string_view jpeg, int quality,
    HuffmanTables tables = HuffmanTables::kCountedWhileRescaling);

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_JPEG_REQUANTIZE_H_
