// Test images generated with libvips at test time (nothing binary is checked in), and helpers
// to inspect the JPEGs imgproc produces.
#ifndef IMGPROC_TESTS_SUPPORT_TEST_IMAGES_H_
#define IMGPROC_TESTS_SUPPORT_TEST_IMAGES_H_

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace imgproc::testing {

// Every generated image is a smooth, photo-like gradient with some noise of the given size.
enum class TestImage {
  kJpegRgb,          // baseline RGB JPEG, 4:2:0 chroma (the fast path's input)
  kJpegProgressive,  // progressive (interlaced) JPEG, 4:2:0
  kJpeg444,          // baseline RGB JPEG, 4:4:4 (full-resolution chroma)
  kJpegCmyk,         // 4-channel CMYK JPEG
  kJpegGray,         // 1-channel grayscale JPEG
  kJpegExifRotate6,  // stored w x h with EXIF orientation 6 (displayed h x w)
  kPngRgb,
  kPngRgba,     // with a transparent area (top-left quarter fully transparent)
  kPngPalette,  // 8-bit palette PNG
  kPng16,       // 16 bits per channel
  kGif,
  kWebp,
  kTiff,
};

// Encodes a test image of width x height. Aborts the test process if libvips fails.
std::string MakeImage(TestImage kind, int width, int height);

// All kinds, for parameterised tests.
inline constexpr std::array<TestImage, 13> kAllTestImages = {
    TestImage::kJpegRgb,    TestImage::kJpegProgressive, TestImage::kJpeg444, TestImage::kJpegCmyk,
    TestImage::kJpegGray,   TestImage::kJpegExifRotate6, TestImage::kPngRgb,  TestImage::kPngRgba,
    TestImage::kPngPalette, TestImage::kPng16,           TestImage::kGif,     TestImage::kWebp,
    TestImage::kTiff};

const char* TestImageName(TestImage kind);

// Damaged copies of a JPEG, as downloads and storage damage them in the wild.
// The first half of `jpeg`, ended with an EOI marker (FF D9) as if the file were complete.
std::string CutJpeg(std::string_view jpeg);
// `jpeg` with `count` bytes from the middle of the file replaced by random ones (a fixed seed).
std::string CorruptJpeg(std::string_view jpeg, size_t count);
// `jpeg` with its frame header (SOFn) claiming width x height: the data then holds far fewer
// blocks than the header promises.
std::string WithJpegSize(std::string_view jpeg, int width, int height);
// `junk` inserted before the first marker after SOI whose code is `marker` (e.g. 0xDB, 0xD9),
// as some writers leave stray bytes between segments.
std::string WithJunkBefore(std::string_view jpeg, unsigned marker, std::string_view junk);

// What a test needs to know about a produced JPEG, read from its own bytes (marker parsing).
struct JpegInfo {
  int width = 0;
  int height = 0;
  int components = 0;
  bool progressive = false;
  // Horizontal and vertical sampling factors of the first component: {2, 2} for 4:2:0 and
  // {1, 1} for 4:4:4 (chroma components are 1x1 in both).
  std::pair<int, int> luma_sampling;
  bool has_exif = false;  // an APP1 "Exif" segment
  bool has_icc = false;   // an APP2 "ICC_PROFILE" segment
  // The luminance quantisation table (table 0) in natural (row-major) order.
  std::optional<std::array<int, 64>> luma_table;
};

// Parses JPEG markers; std::nullopt if `data` is not a JPEG.
std::optional<JpegInfo> InspectJpeg(std::string_view data);

// The IJG standard luminance table scaled for `quality` (libjpeg's jpeg_quality_scaling), in
// natural order.
std::array<int, 64> StandardLumaTable(int quality);

// Mean of the pixels of a decoded image in a rectangle, per band (for checking flattening on
// white and orientation). Decodes with libvips.
std::array<double, 3> MeanRgb(std::string_view image, int left, int top, int width, int height);

// Peak signal-to-noise ratio in dB between two images of the same size, decoded to 8-bit sRGB
// with libvips (99 when identical, NaN when either cannot be decoded).
double Psnr(std::string_view a, std::string_view b);

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_TEST_IMAGES_H_
