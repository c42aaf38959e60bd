#include "pipeline/image_codec.h"

#include <spdlog/spdlog.h>
#include <vips/vips.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

// After <cstdio>; jerror.h names libjpeg's messages (the warning codes judged below).
#include <jerror.h>
#include <jpeglib.h>

#include "pipeline/jpeg_requantize.h"
#include "pipeline/png_inflate.h"
#include "pipeline/reduce_width.h"

namespace imgproc::pipeline {
namespace {

using request::OutputFormat;
using request::OutputSettings;

// libjpeg refuses larger images (JPEG_MAX_DIMENSION).
constexpr uint64_t kMaxJpegSide = 65500;

// libwebp's limit (WEBP_MAX_DIMENSION): checked before decoding, so a large image asked for as WebP
// is refused for its size rather than failing in the encoder with a message about the encoder.
constexpr int kMaxWebpSide = 16383;

// libaom's speed for AVIF is 9 - effort. Three 800x533 photo-like images at Q 50, one thread,
// CPU ms / bytes / PSNR per image: effort 1: 45 ms, 6,305 B, 37.11 dB; 2: 64 ms, 6,183 B,
// 37.15 dB; 3: 159 ms, 5,971 B, 37.26 dB; 4 (libvips' default): 434 ms, 5,703 B, 37.31 dB;
// 6: 1,247 ms, 5,659 B. Each step beyond 2 saves a few percent of the bytes for 2.5-3 times the
// CPU: at 2 an AVIF costs about what the rest of its decode and resize do, at 4 it would be
// 7 times that.
constexpr int kAvifEffort = 2;

// The fast path holds all DCT coefficients of an image at once, 3 bytes a pixel for 4:2:0 (90 MB
// here), where the pixel path streams a few rows: beyond this size the pixel path is used.
constexpr uint64_t kFastPathMaxPixels = 30'000'000;

// The PNG fast path holds the whole inflated image (3 bytes a pixel for RGB, 4 with alpha), where
// libpng streams rows: beyond this, libpng inflates as it goes.
constexpr size_t kPngFastPathMaxBytes = 32 << 20;

// Owns one reference to a VipsImage.
class Image {
 public:
  explicit Image(VipsImage* image) : image_(image) {}
  ~Image() {
    if (image_ != nullptr) g_object_unref(image_);
  }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  Image(Image&& other) noexcept : image_(std::exchange(other.image_, nullptr)) {}
  Image& operator=(Image&& other) noexcept {
    std::swap(image_, other.image_);
    return *this;
  }

  VipsImage* get() const { return image_; }

 private:
  VipsImage* image_;
};

// Takes the first line of libvips' error buffer ("" if there is none) and clears it. The buffer
// is process-wide, so the copy-and-clear is one atomic call; under concurrency a message may still
// belong to another image, which only affects the wording of an error reported anyway.
std::string TakeVipsError() {
  char* raw = vips_error_buffer_copy();
  std::string text = raw != nullptr ? raw : "";
  g_free(raw);
  text.resize(std::min(text.find('\n'), text.size()));
  constexpr std::string_view kSpace = " \t\r";
  text.erase(0, std::min(text.find_first_not_of(kSpace), text.size()));
  text.erase(text.find_last_not_of(kSpace) + 1);
  if (text.size() > 200) text.resize(200);
  return text;
}

constexpr std::string_view kCorrupt = "corrupt or truncated image";

Status Corrupt(const std::string& detail) {
  return Permanent(std::string(kCorrupt) + (detail.empty() ? "" : ": " + detail));
}

// Some failures (e.g. a PNG cut inside its header) leave no message, only a g_warning.
Status Corrupt() { return Corrupt(TakeVipsError()); }

bool IsCorrupt(const Status& status) { return status.message().starts_with(kCorrupt); }

// Replaces `image` by the output of `op(in, &out)`, a libvips operation.
template <typename Op>
Status Transform(Image& image, Op op) {
  VipsImage* out = nullptr;
  if (op(image.get(), &out) != 0) return Corrupt();
  image = Image(out);
  return Status::Ok();
}

// The short format name ("jpeg", "png", "gif", ...) of the trusted libvips loader for `data`.
Result<std::string> DetectFormat(std::string_view data) {
  const char* class_name = vips_foreign_find_load_buffer(data.data(), data.size());
  if (class_name == nullptr) {
    TakeVipsError();
    return Permanent("not an image (unrecognised format)");
  }
  const VipsObjectClass* loader = vips_class_find("VipsForeignLoad", class_name);
  if (loader == nullptr) return Internal(std::string("libvips loader not found: ") + class_name);
  // Nicknames name the format ("jpegload_buffer", "gifload_buffer"); class names may name the
  // library instead (VipsForeignLoadNsgifBuffer).
  const std::string_view nickname = loader->nickname;
  std::string format(nickname.substr(0, nickname.find("load")));
  // find_load_buffer also returns loaders that vips_block_untrusted_set() blocked (SVG, PDF,
  // ImageMagick, ...): large attack surfaces that we never want to run on downloaded bytes.
  const auto* operation = reinterpret_cast<const VipsOperationClass*>(loader);
  if ((operation->flags & (VIPS_OPERATION_UNTRUSTED | VIPS_OPERATION_BLOCKED)) == 0) return format;
  // ImageMagick claims whatever no other loader takes, e.g. a truncated TIFF.
  if (format == "magick") return Permanent("not an image (unrecognised format)");
  return Permanent("unsupported image format: " + format);
}

// Reads only the header; pixels are decoded later, while the JPEG is written. libvips does not
// copy `data`, so it must outlive the image. `fail_on` is how much damage the decoder may paper
// over (with grey or zeros) instead of failing: see Compress().
Result<Image> Load(std::string_view data, VipsAccess access, VipsFailOn fail_on) {
  VipsImage* image = vips_image_new_from_buffer(data.data(), data.size(), "", "access", access,
                                                "fail_on", fail_on, nullptr);
  if (image == nullptr) return Corrupt();
  return Image(image);
}

uint64_t Pixels(const Image& image) {
  return static_cast<uint64_t>(vips_image_get_width(image.get())) *
         static_cast<uint64_t>(vips_image_get_height(image.get()));
}

// Refuses decompression bombs from the header alone, before any pixel memory is allocated.
Status CheckDimensions(uint64_t width, uint64_t height, int frames, const CodecLimits& limits) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height) + " pixels";
  if (width * height > limits.max_pixels) {
    return Permanent("image too large: " + size + " (limit " + std::to_string(limits.max_pixels) +
                     ")");
  }
  if (frames > limits.max_frames) {
    return Permanent("too many frames: " + std::to_string(frames) + " (limit " +
                     std::to_string(limits.max_frames) + ")");
  }
  if (width > kMaxJpegSide || height > kMaxJpegSide) {
    return Permanent("image too large: " + size + " (JPEG allows at most " +
                     std::to_string(kMaxJpegSide) + " per side)");
  }
  return Status::Ok();
}

Status CheckSize(const Image& image, const CodecLimits& limits) {
  return CheckDimensions(static_cast<uint64_t>(vips_image_get_width(image.get())),
                         static_cast<uint64_t>(vips_image_get_height(image.get())),
                         vips_image_get_n_pages(image.get()), limits);
}

// A PNG's size from its IHDR chunk, which the format puts first, at a fixed place: read here
// rather than by libpng, which reads every chunk before the image data and allocates (and
// zeroes) each one's declared length first: a 1x1 header followed by a chunk declaring 45 MiB
// cost 45 MiB of memset on every look at a download's head.
std::optional<std::pair<uint64_t, uint64_t>> PngSize(std::string_view data) {
  constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (data.size() < 24 || data.substr(0, 8) != kSignature || data.substr(12, 4) != "IHDR") {
    return std::nullopt;
  }
  const auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(data[at + i]);
    return v;
  };
  const uint32_t width = be32(16);
  const uint32_t height = be32(20);
  // PNG: both from 1 to 2^31 - 1.
  if (be32(8) != 13 || width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) {
    return std::nullopt;
  }
  return std::pair<uint64_t, uint64_t>(width, height);
}

// Applies the EXIF orientation, so width and height are as displayed.
Status Orient(Image& image) {
  return Transform(image,
                   [](VipsImage* in, VipsImage** out) { return vips_autorot(in, out, nullptr); });
}

// Orient() for an image read sequentially: rotating and flipping read pixels out of order, which a
// sequential decoder cannot do, so the image (already shrunk: this is for resized outputs only)
// is made in memory first.
Status OrientInMemory(Image& image) {
  if (vips_image_get_orientation(image.get()) == 1) return Status::Ok();
  VipsImage* memory = vips_image_copy_memory(image.get());
  if (memory == nullptr) return Corrupt();  // the decoder failing on damaged pixel data
  image = Image(memory);
  return Orient(image);
}

struct Size {
  int width = 0;
  int height = 0;
  bool operator==(const Size& other) const = default;
};

Size SizeOf(const Image& image) {
  return {vips_image_get_width(image.get()), vips_image_get_height(image.get())};
}

Size Transposed(Size size) { return {size.height, size.width}; }

// `input` (as displayed) fitted inside the output's bounds, keeping its aspect ratio, never
// enlarged. The side that binds gets its bound exactly (input * bound / input rounds back to it);
// the other one is rounded to the nearest pixel, as libvips' own thumbnail does.
Size FitInside(Size input, const OutputSettings& output) {
  double scale = 1.0;
  if (output.max_width > 0) {
    scale = std::min(scale, static_cast<double>(output.max_width) / input.width);
  }
  if (output.max_height > 0) {
    scale = std::min(scale, static_cast<double>(output.max_height) / input.height);
  }
  if (scale >= 1.0) return input;
  const auto side = [scale](int length) {
    return std::max(1, static_cast<int>(std::lround(length * scale)));
  };
  return {side(input.width), side(input.height)};
}

// What the output format cannot hold (JPEG's own limit applies to every input: CheckDimensions).
Status CheckOutputSize(Size size, OutputFormat format) {
  if (format == OutputFormat::kWebp && (size.width > kMaxWebpSide || size.height > kMaxWebpSide)) {
    return Permanent("image too large: " + std::to_string(size.width) + "x" +
                     std::to_string(size.height) + " pixels (WebP allows at most " +
                     std::to_string(kMaxWebpSide) + " per side)");
  }
  return Status::Ok();
}

// Reads `data`, a `format` image of `stored` pixels, for resizing to `target` (both in the stored
// orientation), shrinking it while decoding where the decoder can: a JPEG by the largest of 8, 4
// or 2 that leaves it no smaller than `target`, in libjpeg's scaled IDCT (as sharp does by
// default; libvips' thumbnail keeps another factor of 2 for the resize); a WebP by libwebp's
// scaler, straight to about `target`. Other formats are decoded whole and the resize does it all.
//
// Four 1732x1155 photo-like JPEGs, CPU ms per image to the decoded and resized pixels (one thread)
// and PSNR against decoding whole and resizing: to 800x533, whole 45.8 ms, by 2 19.3 ms and
// 45.8 dB; to 400x267, by 2 13.0 ms and 49.0 dB, by 4 9.6 ms and 42.9 dB; to 200x133, by 4
// 9.3 ms and 47.4 dB, by 8 7.6 ms and 43.5 dB. Encoding at quality 80 costs more than that (the
// JPEG's own PSNR is about 35-40 dB), for 2-5 times less work.
Result<Image> LoadShrunk(std::string_view data, const std::string& format, Size stored, Size target,
                         VipsFailOn fail_on) {
  const double shrink = std::min(static_cast<double>(stored.width) / target.width,
                                 static_cast<double>(stored.height) / target.height);
  VipsImage* image = nullptr;
  if (format == "jpeg") {
    const int factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
    image =
        vips_image_new_from_buffer(data.data(), data.size(), "", "access", VIPS_ACCESS_SEQUENTIAL,
                                   "fail_on", fail_on, "shrink", factor, nullptr);
  } else if (format == "webp") {
    image =
        vips_image_new_from_buffer(data.data(), data.size(), "", "access", VIPS_ACCESS_SEQUENTIAL,
                                   "fail_on", fail_on, "scale", 1.0 / shrink, nullptr);
  } else {
    return Load(data, VIPS_ACCESS_SEQUENTIAL, fail_on);
  }
  if (image == nullptr) return Corrupt();
  return Image(image);
}

// Resizes `image` to exactly `target` with libvips' default Lanczos 3 kernel (vips_resize rounds
// each side of `input * scale` to the nearest pixel, which with the scale target / input is
// target), the width of an 8-bit image reduced with SIMD (ResizeDown: the same pixels). Alpha is
// premultiplied meanwhile, or the colour of transparent pixels (often black) would bleed into the
// edges of opaque ones.
Status Resize(Image& image, Size target) {
  const Size input = SizeOf(image);
  if (input == target) return Status::Ok();
  const double hscale = static_cast<double>(target.width) / input.width;
  const double vscale = static_cast<double>(target.height) / input.height;
  const bool alpha = vips_image_hasalpha(image.get()) != 0;
  const VipsBandFormat format = vips_image_get_format(image.get());
  if (alpha) {
    Status s = Transform(
        image, [](VipsImage* in, VipsImage** out) { return vips_premultiply(in, out, nullptr); });
    if (!s.ok()) return s;
  }
  Status s = Transform(
      image, [&](VipsImage* in, VipsImage** out) { return ResizeDown(in, out, hscale, vscale); });
  if (!s.ok() || !alpha) return s;
  s = Transform(
      image, [](VipsImage* in, VipsImage** out) { return vips_unpremultiply(in, out, nullptr); });
  if (!s.ok()) return s;
  return Transform(image, [format](VipsImage* in, VipsImage** out) {
    return vips_cast(in, out, format, nullptr);
  });
}

// Converts to sRGB: through the embedded ICC profile when there is one, by libvips' colourspace
// arithmetic otherwise (grey, CMYK with libvips' default profile, 16-bit, Lab, ...).
Status ToSrgb(Image& image) {
  if (vips_image_get_typeof(image.get(), VIPS_META_ICC_NAME) != 0) {
    Status icc = Transform(image, [](VipsImage* in, VipsImage** out) {
      return vips_icc_transform(in, out, "srgb", "embedded", TRUE, "intent", VIPS_INTENT_PERCEPTUAL,
                                "depth", 8, nullptr);
    });
    if (icc.ok()) return icc;
    // A broken profile or one that does not match the pixels: the arithmetic is still right
    // for the image's own interpretation.
  }
  return Transform(image, [](VipsImage* in, VipsImage** out) {
    return vips_colourspace(in, out, VIPS_INTERPRETATION_sRGB, nullptr);
  });
}

// 8-bit samples, for what the colour conversion left deeper (e.g. 32-bit TIFFs tagged sRGB):
// `shift` scales integer samples down instead of clipping them.
Status ToUchar(Image& image) {
  if (vips_image_get_format(image.get()) == VIPS_FORMAT_UCHAR) return Status::Ok();
  return Transform(image, [](VipsImage* in, VipsImage** out) {
    return vips_cast(in, out, VIPS_FORMAT_UCHAR, "shift", TRUE, nullptr);
  });
}

Status FlattenOnWhite(Image& image) {
  if (!vips_image_hasalpha(image.get())) return Status::Ok();
  return Transform(image, [](VipsImage* in, VipsImage** out) {
    VipsArrayDouble* white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
    const int rc = vips_flatten(in, out, "background", white, nullptr);
    vips_area_unref(VIPS_AREA(white));
    return rc;
  });
}

// Drops any bands beyond the first `keep` (e.g. a second alpha channel in a TIFF).
Status KeepBands(Image& image, int keep) {
  const int bands = vips_image_get_bands(image.get());
  if (bands == keep) return Status::Ok();
  if (bands < 3) return Permanent("unsupported image: " + std::to_string(bands) + " colour bands");
  return Transform(image, [keep](VipsImage* in, VipsImage** out) {
    return vips_extract_band(in, out, 0, "n", keep, nullptr);
  });
}

Status KeepRgb(Image& image) { return KeepBands(image, 3); }

// RGB, and alpha when there is one (sRGB by now, so a fourth band is alpha).
Status KeepRgbAndAlpha(Image& image) {
  return KeepBands(image, vips_image_hasalpha(image.get()) ? 4 : 3);
}

// Runs `save(&buffer, &length)`, a libvips saver, and returns the bytes.
template <typename Save>
Result<std::string> Saved(Save save) {
  void* buffer = nullptr;
  size_t length = 0;
  if (save(&buffer, &length) != 0) return Corrupt();  // usually the decoder failing on damaged data
  std::unique_ptr<void, decltype(&g_free)> owned(buffer, &g_free);
  return std::string(static_cast<const char*>(buffer), length);
}

// Baseline (or progressive) JPEG with the standard IJG tables (quant_table 0) and no metadata
// (no EXIF, no ICC).
Result<std::string> EncodeJpeg(const Image& image, int quality, bool progressive) {
  return Saved([&](void** buffer, size_t* length) {
    return vips_jpegsave_buffer(image.get(), buffer, length, "Q", quality, "strip", TRUE,
                                "optimize_coding", TRUE, "interlace", progressive ? TRUE : FALSE,
                                "quant_table", 0, nullptr);
  });
}

uint32_t Le32(std::string_view bytes, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

void PutLe32(std::string& bytes, size_t at, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

// `webp` without its metadata chunks (ICCP, EXIF, XMP), their flags cleared in the VP8X header.
// libvips 8.14.1, Debian 12's, ignores webpsave's `strip` (fixed in 8.14.2) and writes the image's
// ICC profile, XMP and an EXIF block (made afresh when the input had none: resolution and size).
// std::nullopt if `webp` is not the RIFF file libwebp writes.
std::optional<std::string> WithoutWebpMetadata(std::string_view webp) {
  constexpr size_t kHeader = 12;  // "RIFF", size, "WEBP"
  if (webp.size() < kHeader || webp.substr(0, 4) != "RIFF" || webp.substr(8, 4) != "WEBP" ||
      Le32(webp, 4) != webp.size() - 8) {
    return std::nullopt;
  }
  std::string out(webp.substr(0, kHeader));
  std::optional<size_t> vp8x;  // where the VP8X chunk's flags are in `out`
  for (size_t at = kHeader; at < webp.size();) {
    if (webp.size() - at < 8) return std::nullopt;
    const std::string_view fourcc = webp.substr(at, 4);
    const size_t padded = (static_cast<size_t>(Le32(webp, at + 4)) + 1) & ~size_t{1};
    if (webp.size() - at - 8 < padded) return std::nullopt;
    if (fourcc != "ICCP" && fourcc != "EXIF" && fourcc != "XMP ") {
      if (fourcc == "VP8X") vp8x = out.size() + 8;
      out.append(webp.substr(at, 8 + padded));
    }
    at += 8 + padded;
  }
  if (vp8x) {
    constexpr unsigned char kIcc = 0x20;
    constexpr unsigned char kExif = 0x08;
    constexpr unsigned char kXmp = 0x04;
    out[*vp8x] = static_cast<char>(static_cast<unsigned char>(out[*vp8x]) & ~(kIcc | kExif | kXmp));
  }
  PutLe32(out, 4, static_cast<uint32_t>(out.size() - 8));
  return out;
}

// Lossy WebP (libwebp's default effort, 4), alpha kept, no metadata.
Result<std::string> EncodeWebp(const Image& image, int quality) {
  Result<std::string> webp = Saved([&](void** buffer, size_t* length) {
    return vips_webpsave_buffer(image.get(), buffer, length, "Q", quality, "strip", TRUE, nullptr);
  });
  if (!webp.ok()) return webp;
  std::optional<std::string> stripped = WithoutWebpMetadata(*webp);
  if (!stripped) return Internal("libwebp wrote a file that is not a WebP RIFF file");
  return std::move(*stripped);
}

// AV1 in HEIF (AVIF) with libaom, 8 bits (libvips' default would be 12 for 16-bit input; the
// image is 8-bit here anyway), 4:2:0 below quality 90, alpha kept, no metadata.
Result<std::string> EncodeAvif(const Image& image, int quality) {
  return Saved([&](void** buffer, size_t* length) {
    return vips_heifsave_buffer(image.get(), buffer, length, "Q", quality, "compression",
                                VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "encoder",
                                VIPS_FOREIGN_HEIF_ENCODER_AOM, "effort", kAvifEffort, "bitdepth", 8,
                                "strip", TRUE, nullptr);
  });
}

// The last steps and the encoder of `output`'s format, for an oriented 8-bit sRGB image.
Result<std::string> Save(Image& image, const OutputSettings& output) {
  if (output.format == OutputFormat::kJpeg) {
    for (auto step : {&FlattenOnWhite, &KeepRgb}) {
      if (Status s = step(image); !s.ok()) return s;
    }
    return EncodeJpeg(image, output.quality, output.progressive);
  }
  if (Status s = KeepRgbAndAlpha(image); !s.ok()) return s;
  if (output.format == OutputFormat::kWebp) return EncodeWebp(image, output.quality);
  return EncodeAvif(image, output.quality);
}

// The result for `bytes`, encoded as `output` from `image` (its dimensions are the output's).
EncodedImage Encoded(std::string bytes, std::string format, OutputFormat output, const Image& image,
                     bool fast_path) {
  EncodedImage result;
  result.bytes = std::move(bytes);
  result.format = output;
  result.source_format = std::move(format);
  result.fast_path = fast_path;
  result.width = vips_image_get_width(image.get());
  result.height = vips_image_get_height(image.get());
  return result;
}

// The JPEG decoder's warnings, for deciding which damage a JPEG may have. libjpeg only warns
// about data it cannot decode and carries on (grey for the rest of a cut file, garbage after a bad
// code); libvips can only fail on any warning (VIPS_FAIL_ON_WARNING) or on none. Most warnings
// mean missing or undecodable image data, but a few are about bytes no pixel comes from, which
// real-world files do have: those must not cost the image.
bool IsHarmlessWarning(const jpeg_error_mgr& err) {
  switch (err.msg_code) {
    case JWRN_EXTRANEOUS_DATA: {
      // "N extraneous bytes before marker 0xXX": junk between segments (padding, a writer's
      // stray bytes after the scan), skipped without looking. Before a restart marker, though,
      // it is entropy-coded data of the interval that the decoder did not use: it lost its way.
      const int marker = err.msg_parm.i[1];
      return marker < 0xD0 || marker > 0xD7;
    }
    case JWRN_ADOBE_XFORM:     // unknown Adobe transform code: the default colour transform
    case JWRN_JFIF_MAJOR:      // unknown JFIF version: the header is read as usual
    case JWRN_NOT_SEQUENTIAL:  // odd SOS fields in a baseline scan, which libjpeg ignores
    case JWRN_BOGUS_ICC:       // a bad ICC marker: libvips then converts without the profile
      return true;
    default:  // premature end, bad Huffman or arithmetic code, lost restart sync, ...
      return false;
  }
}

struct DamageReport {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool warned;   // any warning at all
  bool harmful;  // a warning or error that changes pixels; `message` says which
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void OnDamagingMessage(j_common_ptr cinfo) {
  auto* report = reinterpret_cast<DamageReport*>(cinfo->err);
  report->harmful = true;
  (*cinfo->err->format_message)(cinfo, report->message);
  std::longjmp(report->jump, 1);  // the first one decides: no need to decode the rest
}

void OnDecoderMessage(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace
  reinterpret_cast<DamageReport*>(cinfo->err)->warned = true;
  if (!IsHarmlessWarning(*cinfo->err)) OnDamagingMessage(cinfo);
}

// Decodes `data` as libvips' JPEG loader does (header, start, every scanline; not the tail after
// the last row, which libvips does not read either), at 1/8 scale: the whole bitstream is still
// entropy-decoded, so every warning comes, but each block's inverse DCT is its DC term alone and
// the rows are an eighth of the width. C-style: nothing with a destructor may live across
// setjmp/longjmp.
void FindJpegDamage(const unsigned char* data, unsigned long size, uint64_t max_pixels,
                    DamageReport* report) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&report->pub);
  report->pub.error_exit = OnDamagingMessage;
  report->pub.emit_message = OnDecoderMessage;
  report->warned = false;
  report->harmful = false;
  report->message[0] = '\0';
  jpeg_create_decompress(&cinfo);
  if (setjmp(report->jump) == 0) {
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    // Only reached with a header libvips read and found within the limits; should libjpeg read
    // another one, the limit still holds (a progressive image's coefficients are all in memory).
    if (static_cast<uint64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
      std::longjmp(report->jump, 1);  // no verdict
    }
    cinfo.scale_num = 1;
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_IFAST;
    cinfo.do_fancy_upsampling = FALSE;
    jpeg_start_decompress(&cinfo);
    JSAMPARRAY row = (*cinfo.mem->alloc_sarray)(
        reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
        cinfo.output_width * static_cast<JDIMENSION>(cinfo.output_components), 1);
    while (cinfo.output_scanline < cinfo.output_height) jpeg_read_scanlines(&cinfo, row, 1);
  }
  jpeg_destroy_decompress(&cinfo);
}

// Decodes `data`, a `format` image of `stored` pixels, resized to `target` (both in the stored
// orientation), and encodes it as `output` says. The image is shrunk first, while decoding where
// it can be, and only the small image is rotated, converted and encoded.
Result<EncodedImage> CompressResized(std::string_view data, std::string format, Size stored,
                                     Size target, const OutputSettings& output,
                                     VipsFailOn fail_on) {
  Result<Image> image = LoadShrunk(data, format, stored, target, fail_on);
  if (!image.ok()) return image.status();
  if (Status s = Resize(*image, target); !s.ok()) return s;
  for (auto step : {&OrientInMemory, &ToSrgb, &ToUchar}) {
    if (Status s = step(*image); !s.ok()) return s;
  }
  Result<std::string> bytes = Save(*image, output);
  if (!bytes.ok()) return bytes.status();
  return Encoded(std::move(*bytes), std::move(format), output.format, *image,
                 /*fast_path=*/false);
}

// Decodes and encodes `data`, a `format` image, its loader failing on what `fail_on` says.
Result<EncodedImage> CompressAs(std::string_view data, std::string format,
                                const OutputSettings& output, const CodecLimits& limits,
                                VipsFailOn fail_on, bool try_fast_path) {
  // Sequential access streams pixels from decoder to encoder through a few scanlines of memory.
  Result<Image> image = Load(data, VIPS_ACCESS_SEQUENTIAL, fail_on);
  if (!image.ok()) return image.status();
  if (Status s = CheckSize(*image, limits); !s.ok()) return s;
  // The sizes come from the full-size header: a shrinking load (LoadShrunk) reports its own.
  const Size stored = SizeOf(*image);
  const bool transposed = vips_image_get_orientation_swap(image->get()) != 0;
  const Size shown = transposed ? Transposed(stored) : stored;
  const Size target = FitInside(shown, output);
  if (Status s = CheckOutputSize(target, output.format); !s.ok()) return s;
  if (target != shown) {
    return CompressResized(data, std::move(format), stored,
                           transposed ? Transposed(target) : target, output, fail_on);
  }
  // The fast paths write a baseline JPEG of the input's pixel dimensions.
  const bool baseline_jpeg = output.format == OutputFormat::kJpeg && !output.progressive;
  std::string inflated;  // the rewritten PNG that `data` then points to
  if (baseline_jpeg && limits.png_fast_path && format == "png") {
    if (std::optional<std::string> png = InflatePng(data, kPngFastPathMaxBytes)) {
      inflated = std::move(*png);
      data = inflated;
      image = Load(data, VIPS_ACCESS_SEQUENTIAL, fail_on);
      if (!image.ok()) return image.status();
    }
  }
  const int orientation = vips_image_get_orientation(image->get());
  if (try_fast_path && baseline_jpeg && limits.jpeg_fast_path && format == "jpeg" &&
      orientation == 1 && Pixels(*image) <= kFastPathMaxPixels &&
      vips_image_get_typeof(image->get(), VIPS_META_ICC_NAME) == 0) {
    if (std::optional<std::string> jpeg = RequantizeJpeg(data, output.quality)) {
      return Encoded(std::move(*jpeg), std::move(format), output.format, *image,
                     /*fast_path=*/true);
    }
  }
  if (orientation != 1) {
    // Rotating and flipping read pixels out of order, which a sequential decoder cannot do.
    image = Load(data, VIPS_ACCESS_RANDOM, fail_on);
    if (!image.ok()) return image.status();
  }

  for (auto step : {&Orient, &ToSrgb, &ToUchar}) {
    if (Status s = step(*image); !s.ok()) return s;
  }
  Result<std::string> bytes = Save(*image, output);
  if (!bytes.ok()) return bytes.status();
  return Encoded(std::move(*bytes), std::move(format), output.format, *image,
                 /*fast_path=*/!inflated.empty());
}

Result<EncodedImage> Compress(std::string_view data, const OutputSettings& output,
                              const CodecLimits& limits) {
  if (data.empty()) return Permanent("not an image (empty)");
  Result<std::string> format = DetectFormat(data);
  if (!format.ok()) return format.status();
  // Other formats fail on errors, truncation included (VIPS_FAIL_ON_ERROR): a cut PNG, GIF,
  // WebP or TIFF fails, and so does damaged PNG data (checksummed). Failing on warnings would
  // catch no more: libvips 8.14 ignores it for PNG, WebP and TIFF, and for GIF it fails on damage
  // in the frames after the first, which are never decoded.
  if (*format != "jpeg") {
    return CompressAs(data, std::move(*format), output, limits, VIPS_FAIL_ON_ERROR,
                      /*try_fast_path=*/true);
  }
  // A JPEG, though, is only "truncated" for libvips when its bytes run out: one cut and ended
  // with an EOI marker, or with damaged data, or whose header claims more rows than its data
  // holds, is a warning ("premature end of data segment", "bad Huffman code") after which libjpeg
  // paints the rest grey. So JPEGs fail on warnings, checked by libvips before each strip of 8
  // rows (the last strip's are not: a cut there loses at most 8 rows). Clean files, the common
  // case, cost nothing more; a file with warnings is then decoded again by libjpeg alone, and if
  // all of them are harmless, once more without failing on them.
  Result<EncodedImage> strict =
      CompressAs(data, *format, output, limits, VIPS_FAIL_ON_WARNING, /*try_fast_path=*/true);
  if (strict.ok() || !IsCorrupt(strict.status())) return strict;
  DamageReport report;
  FindJpegDamage(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                 limits.max_pixels, &report);
  if (report.harmful) return Corrupt(report.message);
  if (!report.warned) return strict;  // libvips failed for a reason of its own: that is the error
  spdlog::debug("JPEG with harmless warnings only, decoded without failing on them");
  // The fast path gives up on any warning: it already did.
  return CompressAs(data, std::move(*format), output, limits, VIPS_FAIL_ON_ERROR,
                    /*try_fast_path=*/false);
}

}  // namespace

Status InitCodec() {
  static std::once_flag once;
  static Status status;
  std::call_once(once, [] {
    if (VIPS_INIT("imgproc") != 0) {
      status = Internal("cannot start libvips: " + TakeVipsError());
      return;
    }
    vips_block_untrusted_set(TRUE);  // loaders libvips itself calls unsafe on hostile input
    vips_cache_set_max(0);           // no operation cache: every input is new and untrusted
    vips_concurrency_set(1);         // parallelism comes from our own pool, one image per thread
    vips_leak_set(FALSE);            // no per-object bookkeeping in production
    // libvips warns on stderr about every odd input; hostile input is expected here, and the
    // outcome is reported per image, so its warnings go to the debug log instead.
    g_log_set_handler(
        "VIPS", static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE),
        [](const gchar*, GLogLevelFlags, const gchar* message, gpointer) {
          spdlog::debug("libvips: {}", message);
        },
        nullptr);
  });
  return status;
}

ImageHeader ReadHeader(std::string_view data, const CodecLimits& limits) {
  ImageHeader header;
  if (data.empty() || !DetectFormat(data).ok()) return header;
  if (const auto png = PngSize(data)) {
    header.pixels = png->first * png->second;
    header.refusal = CheckDimensions(png->first, png->second, 1, limits);
    return header;
  }
  // Header only: how much damage the pixels may have does not matter yet.
  Result<Image> image = Load(data, VIPS_ACCESS_SEQUENTIAL, VIPS_FAIL_ON_ERROR);
  if (!image.ok()) return header;
  header.pixels = Pixels(*image);
  header.refusal = CheckSize(*image, limits);
  return header;
}

Result<EncodedImage> CompressToJpeg(std::string_view data, const CodecLimits& limits) {
  return Encode(data, {.format = OutputFormat::kJpeg, .quality = limits.jpeg_quality}, limits);
}

Result<EncodedImage> Encode(std::string_view data, const OutputSettings& output,
                            const CodecLimits& limits) {
  // The caller checks its settings (request::CheckSettings); a libvips saver would otherwise
  // report a bad quality as a corrupt image.
  if (output.quality < 1 || output.quality > 100 || output.max_width < 0 || output.max_height < 0) {
    return Internal("output settings out of range: " + request::Token(output));
  }
  try {
    return Compress(data, output, limits);
  } catch (const std::bad_alloc&) {  // the only exception possible: copying into std::string
    return Internal("out of memory while encoding the image");
  }
}

}  // namespace imgproc::pipeline
