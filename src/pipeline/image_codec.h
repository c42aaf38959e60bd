// Decoding an untrusted image and re-encoding it with libvips: as the seed's baseline JPEG at
// quality 50, or as a request's output settings say (JPEG, WebP or AVIF, a quality, bounds to fit
// inside, progressive JPEG).
//
// The input format is recognised from its bytes, never from a Content-Type. The output is 8-bit
// sRGB, EXIF orientation applied, metadata stripped; a JPEG has transparency flattened on white
// and standard IJG quantisation tables, a WebP or an AVIF keeps its alpha. Without bounds it has
// the pixel dimensions of the (oriented) input.
#ifndef IMGPROC_PIPELINE_IMAGE_CODEC_H_
#define IMGPROC_PIPELINE_IMAGE_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "request/outputs.h"

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
  std::string bytes;  // the encoded image, in `format`
  request::OutputFormat format = request::OutputFormat::kJpeg;
  std::string source_format;  // e.g. "jpeg", "png", "webp", "gif", "tiff"
  bool fast_path = false;     // made by a fast path: the JPEG one, or the PNG one
  int width = 0;              // of the output
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
  // Not OK when CompressToJpeg (and Encode, whatever the output) will refuse the image for its
  // size.
  Status refusal;
};
ImageHeader ReadHeader(std::string_view data, const CodecLimits& limits);

// Decodes `data` and encodes it as JPEG. Errors are kPermanent with a message for the user,
// e.g. "not an image", "image too large: 20000x20000 pixels", "corrupt or truncated image: ...".
// A file cut short or with damaged data is an error, never an image padded with grey, including
// a JPEG whose decoder only warns (libjpeg's "premature end of data segment"); harmless JPEG
// warnings, such as stray bytes between segments, are not.
// The same as Encode(data, {kJpeg, limits.jpeg_quality}, limits): the same bytes.
Result<EncodedImage> CompressToJpeg(std::string_view data, const CodecLimits& limits);

// Decodes `data` and encodes it as `output` says, with CompressToJpeg's checks and errors (and
// `limits.jpeg_quality` unused: the quality is `output.quality`).
//
// With a bound, the image is made to fit inside max_width x max_height (0: no bound on that
// side), keeping its aspect ratio, never enlarged: the side that binds gets its bound exactly and
// the other one `round(side * bound / bound side)`, at least 1 pixel. JPEG and WebP inputs are
// shrunk while decoded (libjpeg's DCT scaling, libwebp's scaler), the rest of the way with
// libvips' Lanczos 3 resize, alpha premultiplied. `progressive` only applies to JPEG. The fast
// paths only serve a baseline JPEG at the input's dimensions. A WebP output is refused
// ("image too large") beyond WebP's 16383 pixels per side.
Result<EncodedImage> Encode(std::string_view data, const request::OutputSettings& output,
                            const CodecLimits& limits);

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_IMAGE_CODEC_H_
