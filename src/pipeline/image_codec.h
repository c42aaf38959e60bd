// Decoding an untrusted image and re-encoding it as a baseline JPEG at quality 50 with libvips.
//
// The input format is recognised from its bytes, never from a Content-Type. The output is 8-bit
// sRGB, EXIF orientation applied, transparency flattened on white, metadata stripped, standard
// IJG quantisation tables, same pixel dimensions as the (oriented) input.
#ifndef IMGPROC_PIPELINE_IMAGE_CODEC_H_
#define IMGPROC_PIPELINE_IMAGE_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace imgproc::pipeline {

struct CodecLimits {
  uint64_t max_pixels = 100'000'000;  // width * height of the decoded image
  int max_frames = 1000;  // frames of an animation (only the first is decoded; the rest is refused
                          // beyond this so a header cannot promise endless work)
  int jpeg_quality = 50;
  // JPEG input that needs no pixel work (4:2:0 YCbCr, no rotation, no colour profile) is
  // re-quantised in the DCT domain instead of being decoded and encoded (jpeg_requantize.h).
  bool jpeg_fast_path = true;
  // PNG image data is inflated by libdeflate ahead of libpng (png_inflate.h). The output is the
  // same either way; off only to compare.
  bool png_fast_path = true;
};

struct EncodedImage {
  std::string bytes;          // the encoded image
  std::string source_format;  // e.g. "jpeg", "png", "webp", "gif", "tiff"
  bool fast_path = false;     // made by a fast path: the JPEG one, or the PNG one
  int width = 0;
  int height = 0;
};

// Must be called once per process before any other function here: starts libvips, blocks its
// untrusted loaders, turns off its operation cache and makes each operation single-threaded (our
// own pool provides the parallelism). Returns an error if libvips cannot start.
Status InitCodec();

// What an image's header alone says, from the whole file or only its start. Cheap: no pixel is
// decoded.
struct ImageHeader {
  // width * height; 0 when the header cannot be read (CompressToJpeg then says why).
  uint64_t pixels = 0;
  // Not OK when CompressToJpeg will refuse the image for its size.
  Status refusal;
};
ImageHeader ReadHeader(std::string_view data, const CodecLimits& limits);

// Decodes `data` and encodes it as JPEG. Errors are kPermanent with a message for the user,
// e.g. "not an image", "image too large: 20000x20000 pixels", "corrupt or truncated image: ...".
// A file cut short or with damaged data is an error, never an image padded with grey, including
// a JPEG whose decoder only warns (libjpeg's "premature end of data segment"); harmless JPEG
// warnings, such as stray bytes between segments, are not.
Result<EncodedImage> CompressToJpeg(std::string_view data, const CodecLimits& limits);

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_IMAGE_CODEC_H_
