#include "test_images.h"

#include <vips/vips.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "vips_image.h"

namespace imgproc::testing {
namespace {

void FillRect(const VipsImg& image, double value, int width, int height) {
  std::vector<double> ink(static_cast<size_t>(vips_image_get_bands(image.get())), value);
  if (vips_draw_rect(image.get(), ink.data(), static_cast<int>(ink.size()), 0, 0, width, height,
                     "fill", TRUE, nullptr) != 0) {
    VipsFailed("draw_rect");
  }
}

// Mild Gaussian noise with a fixed seed, so every call gives the same image.
VipsImg Noise(int width, int height) {
  std::mt19937 random(42);
  std::normal_distribution<float> normal(0.0F, 6.0F);
  std::vector<float> samples(static_cast<size_t>(width) * static_cast<size_t>(height));
  for (float& sample : samples) sample = normal(random);
  VipsImage* noise = vips_image_new_from_memory_copy(samples.data(), samples.size() * sizeof(float),
                                                     width, height, 1, VIPS_FORMAT_FLOAT);
  if (noise == nullptr) VipsFailed("new_from_memory_copy");
  return VipsImg(noise);
}

// A photo-like sRGB image: smooth colour gradients plus noise, with a dark rectangle over the
// top-left quarter so that orientation changes are visible.
VipsImg Photo(int width, int height) {
  VipsImg xy =
      RunVips("xyz", [&](VipsImage** out) { return vips_xyz(out, width, height, nullptr); });
  VipsImg x = Band(xy, 0);
  VipsImg y = Band(xy, 1);
  VipsImg sum = Add(x, y);
  VipsImg r = Linear(x, 180.0 / width, 60);
  VipsImg g = Linear(y, 180.0 / height, 50);
  VipsImg b = Linear(sum, 120.0 / (width + height), 100);
  VipsImage* bands[] = {r.get(), g.get(), b.get()};
  VipsImg rgb =
      RunVips("bandjoin", [&](VipsImage** out) { return vips_bandjoin(bands, out, 3, nullptr); });
  VipsImg noise = Noise(width, height);
  VipsImg noisy = RunVips(
      "add", [&](VipsImage** out) { return vips_add(rgb.get(), noise.get(), out, nullptr); });
  VipsImg photo = Memory(Tag(Cast(noisy, VIPS_FORMAT_UCHAR), VIPS_INTERPRETATION_sRGB));
  FillRect(photo, 10, width / 4, height / 4);
  return photo;
}

// CMYK pixels through libvips' built-in CMYK profile, which is then dropped: the JPEG carries
// no profile, like many CMYK files in the wild.
VipsImg Cmyk(const VipsImg& photo) {
  VipsImg cmyk = RunVips("icc_transform", [&](VipsImage** out) {
    return vips_icc_transform(photo.get(), out, "cmyk", "input_profile", "srgb", nullptr);
  });
  VipsImg copy =
      RunVips("copy", [&](VipsImage** out) { return vips_copy(cmyk.get(), out, nullptr); });
  vips_image_remove(copy.get(), VIPS_META_ICC_NAME);
  return Tag(copy, VIPS_INTERPRETATION_CMYK);
}

// The photo with an alpha band: the top-left quarter fully transparent, the rest opaque.
VipsImg WithAlpha(const VipsImg& photo) {
  const int width = vips_image_get_width(photo.get());
  const int height = vips_image_get_height(photo.get());
  VipsImg black =
      RunVips("black", [&](VipsImage** out) { return vips_black(out, width, height, nullptr); });
  VipsImg alpha = Memory(Cast(Linear(black, 1, 255), VIPS_FORMAT_UCHAR));
  FillRect(alpha, 0, width / 4, height / 4);
  return RunVips("bandjoin2", [&](VipsImage** out) {
    return vips_bandjoin2(photo.get(), alpha.get(), out, nullptr);
  });
}

VipsImg WithOrientation(const VipsImg& photo, int orientation) {
  VipsImg copy =
      RunVips("copy", [&](VipsImage** out) { return vips_copy(photo.get(), out, nullptr); });
  vips_image_set_int(copy.get(), VIPS_META_ORIENTATION, orientation);
  return copy;
}

// Quality 90 with 4:2:0 chroma subsampling, as cameras and most of the web write them (libvips
// itself would keep 4:4:4 at this quality), unless `full_chroma`.
std::string Jpeg(const VipsImg& image, bool interlace = false, bool full_chroma = false) {
  return Encode("jpegsave", [&](void** buffer, size_t* length) {
    return vips_jpegsave_buffer(
        image.get(), buffer, length, "Q", 90, "interlace", interlace, "subsample_mode",
        full_chroma ? VIPS_FOREIGN_SUBSAMPLE_OFF : VIPS_FOREIGN_SUBSAMPLE_ON, nullptr);
  });
}

std::string Png(const VipsImg& image, bool palette = false) {
  return Encode("pngsave", [&](void** buffer, size_t* length) {
    return vips_pngsave_buffer(image.get(), buffer, length, "palette", palette, nullptr);
  });
}

unsigned Byte(std::string_view data, size_t at) { return static_cast<unsigned char>(data[at]); }

unsigned BigEndian16(std::string_view data, size_t at) {
  return Byte(data, at) << 8 | Byte(data, at + 1);
}

// SOFn payload: precision, height, width, number of components.
bool ReadFrame(std::string_view payload, bool progressive, JpegInfo& info) {
  if (payload.size() < 6) return false;
  info.height = static_cast<int>(BigEndian16(payload, 1));
  info.width = static_cast<int>(BigEndian16(payload, 3));
  info.components = static_cast<int>(Byte(payload, 5));
  info.progressive = progressive;
  if (info.components > 0) {
    if (payload.size() < 9) return false;
    info.luma_sampling = {Byte(payload, 7) >> 4, Byte(payload, 7) & 15};  // after the component id
  }
  return true;
}

// DQT payload: one or more tables of 64 entries (8 or 16 bits each) in zigzag order.
bool ReadQuantTables(std::string_view payload, JpegInfo& info) {
  // kZigzag[k] is the natural (row-major) index of the k-th coefficient in zigzag order.
  static constexpr int kZigzag[64] = {
      0,  1,  8,  16, 9,  2,  3,  10,  //
      17, 24, 32, 25, 18, 11, 4,  5,   //
      12, 19, 26, 33, 40, 48, 41, 34,  //
      27, 20, 13, 6,  7,  14, 21, 28,  //
      35, 42, 49, 56, 57, 50, 43, 36,  //
      29, 22, 15, 23, 30, 37, 44, 51,  //
      58, 59, 52, 45, 38, 31, 39, 46,  //
      53, 60, 61, 54, 47, 55, 62, 63,  //
  };
  size_t at = 0;
  while (at < payload.size()) {
    const bool wide = (Byte(payload, at) >> 4) != 0;
    const unsigned id = Byte(payload, at) & 0x0F;
    const size_t entry_size = wide ? 2 : 1;
    if (at + 1 + 64 * entry_size > payload.size()) return false;
    std::array<int, 64> table{};
    for (size_t k = 0; k < 64; ++k) {
      const size_t entry = at + 1 + k * entry_size;
      table[kZigzag[k]] =
          static_cast<int>(wide ? BigEndian16(payload, entry) : Byte(payload, entry));
    }
    if (id == 0) info.luma_table = table;
    at += 1 + 64 * entry_size;
  }
  return true;
}

// Markers that stand alone, without a length: TEM, RSTn, SOI.
bool IsStandalone(unsigned marker) { return marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8); }

// The offset of the first marker `code` after SOI, walking the segments and skipping the
// entropy-coded data after each SOS.
std::optional<size_t> MarkerOffset(std::string_view jpeg, unsigned code) {
  size_t at = 2;
  while (at + 2 <= jpeg.size()) {
    if (Byte(jpeg, at) != 0xFF) return std::nullopt;
    const unsigned marker = Byte(jpeg, at + 1);
    if (marker == code) return at;
    if (marker == 0xFF) {  // a fill byte before a marker
      ++at;
      continue;
    }
    if (marker == 0xD9) return std::nullopt;
    if (IsStandalone(marker)) {
      at += 2;
      continue;
    }
    if (at + 4 > jpeg.size()) return std::nullopt;
    at += 2 + BigEndian16(jpeg, at + 2);
    if (marker != 0xDA) continue;
    // The scan's data runs to the next marker: FF 00 is a stuffed byte, FF D0..D7 a restart.
    while (at + 1 < jpeg.size() && !(Byte(jpeg, at) == 0xFF && Byte(jpeg, at + 1) != 0x00 &&
                                     (Byte(jpeg, at + 1) < 0xD0 || Byte(jpeg, at + 1) > 0xD7))) {
      ++at;
    }
  }
  return std::nullopt;
}

// Decodes to 8-bit sRGB; null (with libvips' error set) on failure.
std::optional<VipsImg> DecodeSrgb(std::string_view image) {
  VipsImage* out = vips_image_new_from_buffer(image.data(), image.size(), "", nullptr);
  if (out == nullptr) return std::nullopt;
  const VipsImg decoded(out);
  if (vips_colourspace(decoded.get(), &out, VIPS_INTERPRETATION_sRGB, nullptr) != 0) {
    return std::nullopt;
  }
  return VipsImg(out);
}

std::optional<std::array<double, 3>> TryMeanRgb(std::string_view image, int left, int top,
                                                int width, int height) {
  std::optional<VipsImg> rgb = DecodeSrgb(image);
  if (!rgb) return std::nullopt;
  VipsImage* out = nullptr;
  if (vips_extract_area(rgb->get(), &out, left, top, width, height, nullptr) != 0) {
    return std::nullopt;
  }
  const VipsImg area(out);
  if (vips_stats(area.get(), &out, nullptr) != 0) return std::nullopt;
  const VipsImg stats(out);
  // Row 0 is for all bands together, row b + 1 for band b; column 4 is the mean.
  std::array<double, 3> mean{};
  for (int band = 0; band < 3; ++band) mean[band] = *VIPS_MATRIX(stats.get(), 4, band + 1);
  return mean;
}

std::optional<double> TryPsnr(std::string_view a, std::string_view b) {
  std::optional<VipsImg> first = DecodeSrgb(a);
  std::optional<VipsImg> second = DecodeSrgb(b);
  if (!first || !second) return std::nullopt;
  VipsImage* out = nullptr;
  if (vips_subtract(first->get(), second->get(), &out, nullptr) != 0) return std::nullopt;
  const VipsImg difference(out);
  if (vips_multiply(difference.get(), difference.get(), &out, nullptr) != 0) return std::nullopt;
  const VipsImg squares(out);
  double mse = 0;
  if (vips_avg(squares.get(), &mse, nullptr) != 0) return std::nullopt;
  return mse == 0 ? 99.0 : 10 * std::log10(255.0 * 255.0 / mse);
}

}  // namespace

double Psnr(std::string_view a, std::string_view b) {
  EnsureVips();
  if (std::optional<double> psnr = TryPsnr(a, b)) return *psnr;
  std::fprintf(stderr, "Psnr failed: %s\n", vips_error_buffer());
  vips_error_clear();
  return std::nan("");
}

const char* TestImageName(TestImage kind) {
  switch (kind) {
    case TestImage::kJpegRgb:
      return "jpeg_rgb";
    case TestImage::kJpegProgressive:
      return "jpeg_progressive";
    case TestImage::kJpeg444:
      return "jpeg_444";
    case TestImage::kJpegCmyk:
      return "jpeg_cmyk";
    case TestImage::kJpegGray:
      return "jpeg_gray";
    case TestImage::kJpegExifRotate6:
      return "jpeg_exif_rotate6";
    case TestImage::kPngRgb:
      return "png_rgb";
    case TestImage::kPngRgba:
      return "png_rgba";
    case TestImage::kPngPalette:
      return "png_palette";
    case TestImage::kPng16:
      return "png_16bit";
    case TestImage::kGif:
      return "gif";
    case TestImage::kWebp:
      return "webp";
    case TestImage::kTiff:
      return "tiff";
  }
  return "unknown";
}

std::string MakeImage(TestImage kind, int width, int height) {
  EnsureVips();
  const VipsImg photo = Photo(width, height);
  switch (kind) {
    case TestImage::kJpegRgb:
      return Jpeg(photo);
    case TestImage::kJpegProgressive:
      return Jpeg(photo, /*interlace=*/true);
    case TestImage::kJpeg444:
      return Jpeg(photo, /*interlace=*/false, /*full_chroma=*/true);
    case TestImage::kJpegCmyk:
      return Jpeg(Cmyk(photo));
    case TestImage::kJpegGray:
      return Jpeg(RunVips("colourspace", [&](VipsImage** out) {
        return vips_colourspace(photo.get(), out, VIPS_INTERPRETATION_B_W, nullptr);
      }));
    case TestImage::kJpegExifRotate6:
      return Jpeg(WithOrientation(photo, 6));  // jpegsave writes the orientation as EXIF
    case TestImage::kPngRgb:
      return Png(photo);
    case TestImage::kPngRgba:
      return Png(WithAlpha(photo));
    case TestImage::kPngPalette:
      return Png(photo, /*palette=*/true);
    case TestImage::kPng16:
      return Png(Tag(Cast(Linear(photo, 257, 0), VIPS_FORMAT_USHORT), VIPS_INTERPRETATION_RGB16));
    case TestImage::kGif:
      return Encode("gifsave", [&](void** buffer, size_t* length) {
        return vips_gifsave_buffer(photo.get(), buffer, length, nullptr);
      });
    case TestImage::kWebp:
      return Encode("webpsave", [&](void** buffer, size_t* length) {
        return vips_webpsave_buffer(photo.get(), buffer, length, "Q", 90, nullptr);
      });
    case TestImage::kTiff:
      return Encode("tiffsave", [&](void** buffer, size_t* length) {
        return vips_tiffsave_buffer(photo.get(), buffer, length, nullptr);
      });
  }
  VipsFailed("MakeImage: unknown kind");
}

std::optional<JpegInfo> InspectJpeg(std::string_view data) {
  if (data.size() < 4 || Byte(data, 0) != 0xFF || Byte(data, 1) != 0xD8) return std::nullopt;
  JpegInfo info;
  bool have_frame = false;
  size_t at = 2;
  while (at + 2 <= data.size()) {
    if (Byte(data, at) != 0xFF) return std::nullopt;
    const unsigned marker = Byte(data, at + 1);
    if (marker == 0xFF || IsStandalone(marker)) {  // 0xFF: fill byte before a marker
      at += marker == 0xFF ? 1 : 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) break;  // EOI, or SOS: the headers are over
    if (at + 4 > data.size()) return std::nullopt;
    const size_t length = BigEndian16(data, at + 2);
    if (length < 2 || at + 2 + length > data.size()) return std::nullopt;
    const std::string_view payload = data.substr(at + 4, length - 2);
    bool ok = true;
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) {
      ok = have_frame = ReadFrame(payload, /*progressive=*/marker == 0xC2, info);
    } else if (marker == 0xDB) {
      ok = ReadQuantTables(payload, info);
    } else if (marker == 0xE1 && payload.starts_with(std::string_view("Exif\0", 5))) {
      info.has_exif = true;
    } else if (marker == 0xE2 && payload.starts_with(std::string_view("ICC_PROFILE\0", 12))) {
      info.has_icc = true;
    }
    if (!ok) return std::nullopt;
    at += 2 + length;
  }
  if (!have_frame) return std::nullopt;
  return info;
}

std::string CutJpeg(std::string_view jpeg) {
  return std::string(jpeg.substr(0, jpeg.size() / 2)) + "\xFF\xD9";
}

std::string CorruptJpeg(std::string_view jpeg, size_t count) {
  std::string damaged(jpeg);
  if (count > damaged.size()) VipsFailed("CorruptJpeg: more bytes than the file has");
  std::mt19937 random(19);
  const size_t from = (damaged.size() - count) / 2;
  for (size_t i = from; i < from + count; ++i) damaged[i] = static_cast<char>(random());
  return damaged;
}

std::string WithJpegSize(std::string_view jpeg, int width, int height) {
  std::optional<size_t> sof;
  for (unsigned code : {0xC0u, 0xC1u, 0xC2u}) {
    if (!sof) sof = MarkerOffset(jpeg, code);
  }
  if (!sof) VipsFailed("WithJpegSize: no frame header");
  std::string patched(jpeg);
  // FF Cn, length (2 bytes), precision (1), then height and width, big-endian.
  patched[*sof + 5] = static_cast<char>(height >> 8);
  patched[*sof + 6] = static_cast<char>(height & 0xFF);
  patched[*sof + 7] = static_cast<char>(width >> 8);
  patched[*sof + 8] = static_cast<char>(width & 0xFF);
  return patched;
}

std::string WithJunkBefore(std::string_view jpeg, unsigned marker, std::string_view junk) {
  const std::optional<size_t> at = MarkerOffset(jpeg, marker);
  if (!at) VipsFailed("WithJunkBefore: no such marker");
  return std::string(jpeg.substr(0, *at)) + std::string(junk) + std::string(jpeg.substr(*at));
}

std::array<int, 64> StandardLumaTable(int quality) {
  // std_luminance_quant_tbl from libjpeg's jcparam.c (ITU-T T.81 Annex K), natural order.
  static constexpr int kBase[64] = {
      16, 11, 10, 16, 24,  40,  51,  61,   //
      12, 12, 14, 19, 26,  58,  60,  55,   //
      14, 13, 16, 24, 40,  57,  69,  56,   //
      14, 17, 22, 29, 51,  87,  80,  62,   //
      18, 22, 37, 56, 68,  109, 103, 77,   //
      24, 35, 55, 64, 81,  104, 113, 92,   //
      49, 64, 78, 87, 103, 121, 120, 101,  //
      72, 92, 95, 98, 112, 100, 103, 99,   //
  };
  // jpeg_quality_scaling(), then jpeg_add_quant_table() with force_baseline.
  quality = std::clamp(quality, 1, 100);
  const int scale = quality < 50 ? 5000 / quality : 200 - quality * 2;
  std::array<int, 64> table{};
  for (size_t i = 0; i < 64; ++i) table[i] = std::clamp((kBase[i] * scale + 50) / 100, 1, 255);
  return table;
}

std::array<double, 3> MeanRgb(std::string_view image, int left, int top, int width, int height) {
  EnsureVips();
  if (std::optional<std::array<double, 3>> mean = TryMeanRgb(image, left, top, width, height)) {
    return *mean;
  }
  // Not aborting: a test that hands over a bad image (e.g. the empty output of a failed
  // conversion) fails its checks on NaN, and the other tests still run.
  std::fprintf(stderr, "MeanRgb failed: %s\n", vips_error_buffer());
  vips_error_clear();
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  return {kNaN, kNaN, kNaN};
}

}  // namespace imgproc::testing
