#include "pipeline/image_codec.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <vips/vips.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/jpeg_requantize.h"
#include "test_images.h"

namespace imgproc::pipeline {
namespace {

using imgproc::testing::InspectJpeg;
using imgproc::testing::JpegInfo;
using imgproc::testing::MakeImage;
using imgproc::testing::MeanRgb;
using imgproc::testing::StandardLumaTable;
using imgproc::testing::TestImage;
using imgproc::testing::TestImageName;

constexpr int kWidth = 333;  // odd sizes, not multiples of the 8x8 / 16x16 JPEG blocks
constexpr int kHeight = 222;

class CodecEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_TRUE(InitCodec().ok()); }
};
const auto* const kCodecEnvironment = ::testing::AddGlobalTestEnvironment(new CodecEnvironment);

EncodedImage Compress(std::string_view data, const CodecLimits& limits = {}) {
  Result<EncodedImage> result = CompressToJpeg(data, limits);
  EXPECT_TRUE(result.ok()) << result.status().message();
  return result.ok() ? *result : EncodedImage{};
}

// The markers of a JPEG; a test failure (and all-default info) if `data` is not one.
JpegInfo Inspect(std::string_view data) {
  const std::optional<JpegInfo> info = InspectJpeg(data);
  EXPECT_TRUE(info.has_value()) << "not a JPEG";
  return info.value_or(JpegInfo{});
}

// Expects a kPermanent error whose message contains `text`.
void ExpectRefused(std::string_view data, std::string_view text, const CodecLimits& limits = {}) {
  Result<EncodedImage> result = CompressToJpeg(data, limits);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kPermanent);
  EXPECT_NE(result.status().message().find(text), std::string::npos) << result.status().message();
}

std::string ExpectedFormat(TestImage kind) {
  switch (kind) {
    case TestImage::kJpegRgb:
    case TestImage::kJpegProgressive:
    case TestImage::kJpeg444:
    case TestImage::kJpegCmyk:
    case TestImage::kJpegGray:
    case TestImage::kJpegExifRotate6:
      return "jpeg";
    case TestImage::kPngRgb:
    case TestImage::kPngRgba:
    case TestImage::kPngPalette:
    case TestImage::kPng16:
      return "png";
    case TestImage::kGif:
      return "gif";
    case TestImage::kWebp:
      return "webp";
    case TestImage::kTiff:
      return "tiff";
  }
  return "";
}

// The mean colour of a centred square: the same pixels whether or not the image was rotated by
// 90 degrees, and clear of the dark (or transparent) top-left quarter of the test images.
std::array<double, 3> CentreMean(std::string_view image, int width, int height) {
  constexpr int kSide = 60;
  return MeanRgb(image, (width - kSide) / 2, (height - kSide) / 2, kSide, kSide);
}

double Brightness(const std::array<double, 3>& rgb) { return (rgb[0] + rgb[1] + rgb[2]) / 3; }

// The output has about the colours of `reference`, a kWidth x kHeight image.
void ExpectSameColours(const EncodedImage& out, std::string_view reference) {
  const auto actual = CentreMean(out.bytes, out.width, out.height);
  const auto expected = CentreMean(reference, kWidth, kHeight);
  for (int band = 0; band < 3; ++band) {
    EXPECT_NEAR(actual[band], expected[band], 6.0) << "band " << band;
  }
}

// Owns one reference to a VipsImage, for the inputs that tests build themselves.
struct VipsImageDeleter {
  void operator()(VipsImage* image) const { g_object_unref(image); }
};
using VipsImagePtr = std::unique_ptr<VipsImage, VipsImageDeleter>;

// Runs `op(&out)`, a libvips operation that makes an image.
template <typename Op>
VipsImagePtr Made(Op op) {
  VipsImage* out = nullptr;
  EXPECT_EQ(op(&out), 0) << vips_error_buffer();
  return VipsImagePtr(out);
}

VipsImagePtr Decoded(std::string_view data) {
  return Made([&](VipsImage** out) {
    *out = vips_image_new_from_buffer(data.data(), data.size(), "", nullptr);
    return *out == nullptr ? -1 : 0;
  });
}

// Runs `save(&buffer, &length)`, a libvips saver, and returns the bytes.
template <typename Save>
std::string Saved(Save save) {
  void* buffer = nullptr;
  size_t length = 0;
  EXPECT_EQ(save(&buffer, &length), 0) << vips_error_buffer();
  std::string bytes(static_cast<const char*>(buffer), length);
  g_free(buffer);
  return bytes;
}

// `jpeg` with an APP2 ICC_PROFILE segment holding `profile` (at most ~64 KB) right after SOI.
std::string WithIccSegment(std::string_view jpeg, std::string_view profile) {
  std::string payload("ICC_PROFILE\0\x01\x01", 14);  // chunk 1 of 1
  payload.append(profile);
  const size_t length = payload.size() + 2;
  std::string segment = "\xFF\xE2";
  segment.push_back(static_cast<char>(length >> 8));
  segment.push_back(static_cast<char>(length & 0xFF));
  return std::string(jpeg.substr(0, 2)) + segment + payload + std::string(jpeg.substr(2));
}

std::string BuiltinProfile(const char* name) {
  VipsBlob* blob = nullptr;
  EXPECT_EQ(vips_profile_load(name, &blob, nullptr), 0) << vips_error_buffer();
  size_t length = 0;
  const void* data = vips_blob_get(blob, &length);
  std::string profile(static_cast<const char*>(data), length);
  vips_area_unref(VIPS_AREA(blob));
  return profile;
}

// A black PNG at 1 bit per pixel, written while streaming: cheap to make even when huge.
std::string BlankPng(int width, int height) {
  VipsImagePtr black =
      Made([&](VipsImage** out) { return vips_black(out, width, height, nullptr); });
  return Saved([&](void** buffer, size_t* length) {
    return vips_pngsave_buffer(black.get(), buffer, length, "bitdepth", 1, "compression", 9,
                               nullptr);
  });
}

// An animated GIF of `frames` frames of 16x16, its pages stacked as libvips stores them.
std::string AnimatedGif(int frames) {
  const std::string png = MakeImage(TestImage::kPngRgb, 16, 16 * frames);  // outlives `strip`
  VipsImagePtr strip = Decoded(png);
  VipsImagePtr paged = Made([&](VipsImage** out) { return vips_copy(strip.get(), out, nullptr); });
  vips_image_set_int(paged.get(), "page-height", 16);
  return Saved([&](void** buffer, size_t* length) {
    return vips_gifsave_buffer(paged.get(), buffer, length, nullptr);
  });
}

long PeakRssKiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

class EveryFormatTest : public ::testing::TestWithParam<TestImage> {};

INSTANTIATE_TEST_SUITE_P(AllTestImages, EveryFormatTest,
                         ::testing::ValuesIn(imgproc::testing::kAllTestImages),
                         [](const auto& info) { return TestImageName(info.param); });

TEST_P(EveryFormatTest, GivesBaselineSrgbJpegWithStandardTablesAndNoMetadata) {
  const EncodedImage out = Compress(MakeImage(GetParam(), kWidth, kHeight));
  const std::optional<JpegInfo> info = InspectJpeg(out.bytes);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->components, 3);
  EXPECT_FALSE(info->progressive);
  EXPECT_FALSE(info->has_exif);
  EXPECT_FALSE(info->has_icc);
  EXPECT_EQ(info->luma_table, StandardLumaTable(50));
  EXPECT_EQ(out.source_format, ExpectedFormat(GetParam()));
}

TEST_P(EveryFormatTest, KeepsDisplayedDimensions) {
  const EncodedImage out = Compress(MakeImage(GetParam(), kWidth, kHeight));
  const bool rotated = GetParam() == TestImage::kJpegExifRotate6;
  EXPECT_EQ(out.width, rotated ? kHeight : kWidth);
  EXPECT_EQ(out.height, rotated ? kWidth : kHeight);
  const std::optional<JpegInfo> info = InspectJpeg(out.bytes);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->width, out.width);
  EXPECT_EQ(info->height, out.height);
}

// Catches inverted CMYK, 16-bit samples clipped instead of scaled, wrong colour conversions.
TEST_P(EveryFormatTest, KeepsColours) {
  const EncodedImage out = Compress(MakeImage(GetParam(), kWidth, kHeight));
  const std::string reference = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  if (GetParam() != TestImage::kJpegGray) {
    ExpectSameColours(out, reference);
    return;
  }
  const auto actual = CentreMean(out.bytes, kWidth, kHeight);
  EXPECT_NEAR(actual[0], actual[2], 2.0);  // still grey
  EXPECT_NEAR(Brightness(actual), Brightness(CentreMean(reference, kWidth, kHeight)), 12.0);
}

// Damaged input must fail rather than give a half-grey image.
TEST_P(EveryFormatTest, RefusesTheFirstHalfOfTheFile) {
  const std::string image = MakeImage(GetParam(), kWidth, kHeight);
  const Result<EncodedImage> out = CompressToJpeg(image.substr(0, image.size() / 2), {});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kPermanent);
  EXPECT_FALSE(out.status().message().empty());
}

// What the download gate relies on: the pixel count from the start of a file, never a wrong one.
TEST_P(EveryFormatTest, CountsPixelsFromTheHeadOrNotAtAll) {
  const std::string image = MakeImage(GetParam(), 1200, 900);
  ASSERT_GT(image.size(), 64u * 1024);
  const uint64_t whole = ReadHeader(image, {}).pixels;
  EXPECT_EQ(whole, 1200u * 900);
  const uint64_t head = ReadHeader(std::string_view(image).substr(0, 16 * 1024), {}).pixels;
  EXPECT_TRUE(head == whole || head == 0) << head;
  if (GetParam() != TestImage::kGif && GetParam() != TestImage::kTiff &&
      GetParam() != TestImage::kWebp) {
    EXPECT_EQ(head, whole);  // the formats of product photos
  }
}

TEST(CompressToJpegTest, RefusesAnimationsWithTooManyFrames) {
  const std::string gif = AnimatedGif(6);
  CodecLimits limits;
  limits.max_frames = 5;
  auto refused = CompressToJpeg(gif, limits);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "too many frames: 6 (limit 5)");
  limits.max_frames = 6;
  auto first_frame = CompressToJpeg(gif, limits);
  ASSERT_TRUE(first_frame.ok()) << first_frame.status().message();
  EXPECT_EQ(first_frame->source_format, "gif");
  EXPECT_EQ(first_frame->height, 16);  // the first frame only
}

TEST(CompressToJpegTest, FlattensTransparencyOnWhite) {
  const EncodedImage out = Compress(MakeImage(TestImage::kPngRgba, kWidth, kHeight));
  // Inside the transparent top-left quarter, a few pixels clear of its edges (JPEG blocks blur).
  for (double value : MeanRgb(out.bytes, 4, 4, kWidth / 4 - 8, kHeight / 4 - 8)) {
    EXPECT_GT(value, 250.0);
  }
  EXPECT_LT(Brightness(CentreMean(out.bytes, kWidth, kHeight)), 220.0);  // opaque: not white
}

TEST(CompressToJpegTest, AppliesExifOrientation) {
  // Large enough that libvips cannot rotate it while decoding sequentially.
  constexpr int kStoredWidth = 1600;
  constexpr int kStoredHeight = 1200;
  const EncodedImage out =
      Compress(MakeImage(TestImage::kJpegExifRotate6, kStoredWidth, kStoredHeight));
  ASSERT_EQ(out.width, kStoredHeight);
  // Orientation 6 is displayed turned 90 degrees clockwise: the stored top-left corner (dark, a
  // quarter of each side) becomes the top-right one.
  const int dark_width = kStoredHeight / 4;
  const int dark_height = kStoredWidth / 4;
  const auto top_right =
      MeanRgb(out.bytes, out.width - dark_width + 4, 4, dark_width - 8, dark_height - 8);
  const auto top_left = MeanRgb(out.bytes, 4, 4, dark_width - 8, dark_height - 8);
  EXPECT_LT(Brightness(top_right), 30.0);
  EXPECT_GT(Brightness(top_left), 80.0);
}

TEST(CompressToJpegTest, LeavesUnrotatedImagesAsTheyAre) {
  const EncodedImage out = Compress(MakeImage(TestImage::kJpegRgb, kWidth, kHeight));
  EXPECT_LT(Brightness(MeanRgb(out.bytes, 4, 4, kWidth / 4 - 8, kHeight / 4 - 8)), 30.0);
}

// `image` converted to the colour space of a libvips built-in profile ("cmyk", "p3"), as a JPEG
// with that profile embedded.
std::string JpegWithProfile(std::string_view image, const char* profile) {
  VipsImagePtr decoded = Decoded(image);
  VipsImagePtr converted = Made([&](VipsImage** out) {
    return vips_icc_transform(decoded.get(), out, profile, "input_profile", "srgb", nullptr);
  });
  return Saved([&](void** buffer, size_t* length) {
    return vips_jpegsave_buffer(converted.get(), buffer, length, "Q", 95, nullptr);
  });
}

TEST(CompressToJpegTest, ConvertsCmykThroughItsEmbeddedProfile) {
  // Typical of print workflows.
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  const std::string input = JpegWithProfile(png, "cmyk");
  ASSERT_TRUE(Inspect(input).has_icc);
  const EncodedImage out = Compress(input);
  EXPECT_FALSE(Inspect(out.bytes).has_icc);
  ExpectSameColours(out, png);
}

TEST(CompressToJpegTest, ConvertsWideGamutThroughItsEmbeddedProfile) {
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  const std::string p3 = JpegWithProfile(png, "p3");
  const EncodedImage out = Compress(p3);
  // The bottom-left corner is a saturated green, where Display P3 and sRGB numbers differ most.
  const auto corner = [](std::string_view image) {
    return MeanRgb(image, 4, kHeight * 3 / 4, kWidth / 4 - 8, kHeight / 4 - 4);
  };
  const auto expected = corner(png);
  const auto actual = corner(out.bytes);
  const auto p3_numbers = corner(p3);  // what ignoring the profile would give
  ASSERT_GT(std::abs(p3_numbers[0] - expected[0]), 20.0);
  for (int band = 0; band < 3; ++band) EXPECT_NEAR(actual[band], expected[band], 6.0);
}

TEST(CompressToJpegTest, IgnoresACorruptIccProfile) {
  const std::string jpeg = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  const EncodedImage out = Compress(WithIccSegment(jpeg, std::string(300, 'x')));
  ExpectSameColours(out, jpeg);
}

// libvips cannot apply an RGB profile to grey pixels; the plain conversion must take over.
TEST(CompressToJpegTest, ConvertsWithoutAProfileThatDoesNotFitThePixels) {
  const std::string gray = MakeImage(TestImage::kJpegGray, kWidth, kHeight);
  const EncodedImage out = Compress(WithIccSegment(gray, BuiltinProfile("srgb")));
  ExpectSameColours(out, gray);
}

// 32-bit samples tagged sRGB pass through the colour conversion unchanged; they must be scaled
// down to 8 bits, not clipped.
TEST(CompressToJpegTest, ScalesDeepIntegerSamplesToEightBits) {
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  VipsImagePtr photo = Decoded(png);
  VipsImagePtr wide = Made([&](VipsImage** out) {  // 0xAB -> 0xABABABAB
    return vips_linear1(photo.get(), out, 0x01010101, 0, nullptr);
  });
  VipsImagePtr deep =
      Made([&](VipsImage** out) { return vips_cast(wide.get(), out, VIPS_FORMAT_UINT, nullptr); });
  const std::string tiff = Saved([&](void** buffer, size_t* length) {
    return vips_tiffsave_buffer(deep.get(), buffer, length, nullptr);
  });
  ExpectSameColours(Compress(tiff), png);
}

// A two-frame animation: the photo, then a black frame.
VipsImagePtr Animation(std::string_view photo_bytes) {
  VipsImagePtr photo = Decoded(photo_bytes);
  VipsImagePtr black =
      Made([&](VipsImage** out) { return vips_black(out, kWidth, kHeight, "bands", 3, nullptr); });
  VipsImagePtr frames = Made([&](VipsImage** out) {
    return vips_join(photo.get(), black.get(), out, VIPS_DIRECTION_VERTICAL, nullptr);
  });
  VipsImagePtr animation =
      Made([&](VipsImage** out) { return vips_copy(frames.get(), out, nullptr); });
  vips_image_set_int(animation.get(), VIPS_META_PAGE_HEIGHT, kHeight);
  return animation;
}

TEST(CompressToJpegTest, TakesTheFirstFrameOfAnAnimation) {
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  VipsImagePtr animation = Animation(png);
  const std::string gif = Saved([&](void** buffer, size_t* length) {
    return vips_gifsave_buffer(animation.get(), buffer, length, nullptr);
  });
  const std::string webp = Saved([&](void** buffer, size_t* length) {
    return vips_webpsave_buffer(animation.get(), buffer, length, nullptr);
  });
  for (const std::string& input : {gif, webp}) {
    const EncodedImage out = Compress(input);
    EXPECT_EQ(out.width, kWidth);
    EXPECT_EQ(out.height, kHeight);
    ExpectSameColours(out, png);
  }
}

TEST(CompressToJpegTest, DecodesHeifAndAvif) {
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  VipsImagePtr photo = Decoded(png);
  int decoded = 0;
  for (VipsForeignHeifCompression compression :
       {VIPS_FOREIGN_HEIF_COMPRESSION_HEVC, VIPS_FOREIGN_HEIF_COMPRESSION_AV1}) {
    void* buffer = nullptr;
    size_t length = 0;
    if (vips_heifsave_buffer(photo.get(), &buffer, &length, "compression", compression, "Q", 90,
                             nullptr) != 0) {
      vips_error_clear();
      continue;  // libheif may be built without this encoder, which only the test needs
    }
    const std::string heif(static_cast<const char*>(buffer), length);
    g_free(buffer);
    const EncodedImage out = Compress(heif);
    EXPECT_EQ(out.source_format, "heif");
    EXPECT_EQ(out.width, kWidth);
    ExpectSameColours(out, png);
    ++decoded;
  }
  if (decoded == 0) GTEST_SKIP() << "libheif has neither an HEVC nor an AV1 encoder here";
}

TEST(CompressToJpegTest, UsesTheConfiguredQuality) {
  CodecLimits limits;
  limits.jpeg_quality = 80;
  const EncodedImage out = Compress(MakeImage(TestImage::kPngRgb, kWidth, kHeight), limits);
  EXPECT_EQ(Inspect(out.bytes).luma_table, StandardLumaTable(80));
}

// The DCT-domain fast path (jpeg_requantize.h) takes 4:2:0 JPEGs that need no pixel work.
TEST(JpegFastPathTest, TakesBaselineAndProgressive420Jpegs) {
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpegProgressive}) {
    SCOPED_TRACE(TestImageName(kind));
    const EncodedImage out = Compress(MakeImage(kind, kWidth, kHeight));
    EXPECT_TRUE(out.fast_path);
    const JpegInfo info = Inspect(out.bytes);
    EXPECT_EQ(info.luma_sampling, std::make_pair(2, 2));
    EXPECT_FALSE(info.progressive);
    EXPECT_EQ(info.luma_table, StandardLumaTable(50));
  }
}

TEST(JpegFastPathTest, IsAsGoodAsDecodingAndEncoding) {
  CodecLimits pixel_path;
  pixel_path.jpeg_fast_path = false;
  for (auto [width, height] : {std::pair{kWidth, kHeight}, std::pair{1024, 768}}) {
    const std::string original = MakeImage(TestImage::kJpegRgb, width, height);
    const EncodedImage fast = Compress(original);
    const EncodedImage slow = Compress(original, pixel_path);
    ASSERT_TRUE(fast.fast_path);
    ASSERT_FALSE(slow.fast_path);
    const double fast_psnr = imgproc::testing::Psnr(fast.bytes, original);
    const double slow_psnr = imgproc::testing::Psnr(slow.bytes, original);
    EXPECT_GE(fast_psnr, slow_psnr - 0.1) << width << "x" << height;
    EXPECT_GT(fast_psnr, 30.0);
    EXPECT_LT(fast.bytes.size(), slow.bytes.size() * 11 / 10);
    EXPECT_EQ(fast.width, slow.width);
    EXPECT_EQ(fast.height, slow.height);
  }
}

TEST(JpegFastPathTest, LeavesWhatNeedsPixelWorkToTheDecoder) {
  const std::string srgb_profile = BuiltinProfile("srgb");
  const std::pair<const char*, std::string> inputs[] = {
      {"4:4:4", MakeImage(TestImage::kJpeg444, kWidth, kHeight)},
      {"grey", MakeImage(TestImage::kJpegGray, kWidth, kHeight)},
      {"cmyk", MakeImage(TestImage::kJpegCmyk, kWidth, kHeight)},
      {"rotated", MakeImage(TestImage::kJpegExifRotate6, kWidth, kHeight)},
      {"icc", WithIccSegment(MakeImage(TestImage::kJpegRgb, kWidth, kHeight), srgb_profile)},
  };
  for (const auto& [name, input] : inputs) {
    EXPECT_FALSE(Compress(input).fast_path) << name;
  }
}

// Its coefficients take 3 bytes a pixel at once; beyond 30 MP the streaming pixel path is used.
TEST(JpegFastPathTest, LeavesVeryLargeImagesToTheStreamingDecoder) {
  VipsImagePtr black =
      Made([](VipsImage** out) { return vips_black(out, 6000, 5100, "bands", 3, nullptr); });
  const std::string jpeg = Saved([&](void** buffer, size_t* length) {
    return vips_jpegsave_buffer(black.get(), buffer, length, "Q", 90, "subsample_mode",
                                VIPS_FOREIGN_SUBSAMPLE_ON, nullptr);
  });
  ASSERT_EQ(Inspect(jpeg).luma_sampling, std::make_pair(2, 2));
  const EncodedImage out = Compress(jpeg);
  EXPECT_FALSE(out.fast_path);
  EXPECT_EQ(out.width, 6000);
  EXPECT_EQ(out.height, 5100);
}

TEST(JpegFastPathTest, CanBeTurnedOff) {
  CodecLimits limits;
  limits.jpeg_fast_path = false;
  EXPECT_FALSE(Compress(MakeImage(TestImage::kJpegRgb, kWidth, kHeight), limits).fast_path);
}

TEST(JpegFastPathTest, UsesTheConfiguredQuality) {
  CodecLimits limits;
  limits.jpeg_quality = 80;
  const EncodedImage out = Compress(MakeImage(TestImage::kJpegRgb, kWidth, kHeight), limits);
  EXPECT_TRUE(out.fast_path);
  EXPECT_EQ(Inspect(out.bytes).luma_table, StandardLumaTable(80));
}

// The symbol counts gathered while rescaling give the tables libjpeg's own counting pass gives,
// hence the same bytes: at every edge case of the MCU layout (sizes that are not multiples of
// 8 or 16, where edge MCUs hold dummy blocks), for baseline and progressive input, at qualities
// below and above the input's.
TEST(JpegFastPathTest, CountsTheHuffmanSymbolsAsLibjpegDoes) {
  using imgproc::pipeline::HuffmanTables;
  using imgproc::pipeline::RequantizeJpeg;
  const std::pair<int, int> sizes[] = {{1, 1},   {8, 8},   {9, 7},     {16, 16},
                                       {17, 33}, {33, 17}, {250, 181}, {kWidth, kHeight}};
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpegProgressive}) {
    for (auto [width, height] : sizes) {
      const std::string jpeg = MakeImage(kind, width, height);
      for (int quality : {10, 50, 95}) {
        SCOPED_TRACE(std::string(TestImageName(kind)) + " " + std::to_string(width) + "x" +
                     std::to_string(height) + " Q" + std::to_string(quality));
        const auto counted = RequantizeJpeg(jpeg, quality, HuffmanTables::kCountedWhileRescaling);
        const auto two_pass = RequantizeJpeg(jpeg, quality, HuffmanTables::kLibjpegTwoPass);
        ASSERT_TRUE(counted.has_value());
        ASSERT_TRUE(two_pass.has_value());
        EXPECT_EQ(*counted, *two_pass);
        EXPECT_EQ(Inspect(*counted).luma_table, StandardLumaTable(quality));
      }
    }
  }
}

TEST(JpegFastPathTest, GivesUpOnDamagedData) {
  const std::string jpeg = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  EXPECT_EQ(imgproc::pipeline::RequantizeJpeg(jpeg.substr(0, jpeg.size() * 3 / 4), 50),
            std::nullopt);
  EXPECT_EQ(imgproc::pipeline::RequantizeJpeg("not a jpeg", 50), std::nullopt);
  EXPECT_EQ(imgproc::pipeline::RequantizeJpeg(MakeImage(TestImage::kPngRgb, 8, 8), 50),
            std::nullopt);
  EXPECT_NE(imgproc::pipeline::RequantizeJpeg(jpeg, 50), std::nullopt);
}

TEST(CompressToJpegTest, RefusesEmptyInput) { ExpectRefused("", "not an image"); }

TEST(CompressToJpegTest, RefusesAnHtmlPage) {
  ExpectRefused("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
                "not an image (unrecognised format)");
}

TEST(CompressToJpegTest, RefusesRandomBytes) {
  std::mt19937 random(7);
  std::string bytes(4096, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random());
  ExpectRefused(bytes, "not an image (unrecognised format)");
}

TEST(CompressToJpegTest, RefusesFormatsWithUntrustedLoaders) {
  ExpectRefused(R"(<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>)",
                "unsupported image format: svg");
}

TEST(CompressToJpegTest, RefusesATruncatedJpeg) {
  const std::string jpeg = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  ExpectRefused(std::string_view(jpeg).substr(0, jpeg.size() / 2), "corrupt or truncated image: ");
}

TEST(CompressToJpegTest, RefusesATruncatedPng) {
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  ExpectRefused(std::string_view(png).substr(0, png.size() / 2), "corrupt or truncated image: ");
  ExpectRefused(std::string_view(png).substr(0, 40), "corrupt or truncated image");  // in header
}

// Damage that libjpeg only warns about, painting the rest of the image grey, is an image error
// like a cut file (issue 19: these were "done", their bottom half flat grey). Baseline 4:2:0 (the
// fast path's input, which gives up on them), 4:4:4 and progressive, the fast path on and off.
TEST(CompressToJpegTest, RefusesAJpegCutAndEndedWithAnEoiMarker) {
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpeg444, TestImage::kJpegProgressive}) {
    SCOPED_TRACE(TestImageName(kind));
    const std::string cut = imgproc::testing::CutJpeg(MakeImage(kind, kWidth, kHeight));
    for (bool fast_path : {true, false}) {
      CodecLimits limits;
      limits.jpeg_fast_path = fast_path;
      ExpectRefused(cut, "corrupt or truncated image: ", limits);
    }
  }
}

TEST(CompressToJpegTest, RefusesAJpegWithCorruptedData) {
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpeg444}) {
    SCOPED_TRACE(TestImageName(kind));
    const std::string jpeg = MakeImage(kind, kWidth, kHeight);
    ASSERT_GT(jpeg.size(), 10'000u);
    ExpectRefused(imgproc::testing::CorruptJpeg(jpeg, 2'000), "corrupt or truncated image: ");
  }
}

// A small file whose header claims 10000x9999 pixels made a 586 KB grey JPEG after a second of
// CPU: refused as soon as its data runs out, in the first rows.
TEST(CompressToJpegTest, RefusesATinyJpegClaimingAHugeSize) {
  const std::string jpeg =
      imgproc::testing::WithJpegSize(MakeImage(TestImage::kJpegRgb, 32, 32), 10'000, 9'999);
  ASSERT_LT(jpeg.size(), 2'000u);
  ASSERT_EQ(ReadHeader(jpeg, {}).pixels, 10'000u * 9'999);
  ExpectRefused(jpeg, "corrupt or truncated image: ");
}

// Stray bytes between segments are a libjpeg warning too, a harmless one that real files have
// ("extraneous bytes before marker"): those images still go through, with all their pixels.
TEST(CompressToJpegTest, AcceptsJpegsWithStrayBytesBetweenSegments) {
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpeg444, TestImage::kJpegProgressive}) {
    const std::string jpeg = MakeImage(kind, kWidth, kHeight);
    const EncodedImage clean = Compress(jpeg);
    for (unsigned marker : {0xDBu, 0xD9u}) {  // before the quantisation tables; before the end
      SCOPED_TRACE(std::string(TestImageName(kind)) + " before marker " + std::to_string(marker));
      const EncodedImage out = Compress(imgproc::testing::WithJunkBefore(jpeg, marker, "junk"));
      EXPECT_EQ(out.width, kWidth);
      EXPECT_EQ(out.height, kHeight);
      EXPECT_GT(imgproc::testing::Psnr(out.bytes, clean.bytes), 40);
      ExpectSameColours(out, jpeg);
    }
  }
}

TEST(CompressToJpegTest, RefusesImagesOverThePixelLimit) {
  CodecLimits limits;
  limits.max_pixels = 10'000;
  const std::string image = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  ExpectRefused(image, "image too large: 333x222 pixels (limit 10000)", limits);
  // The same refusal from the header alone, as the download gate sees it.
  const ImageHeader header = ReadHeader(std::string_view(image).substr(0, 1024), limits);
  EXPECT_EQ(header.pixels, 333u * 222);
  EXPECT_EQ(header.refusal.message(), "image too large: 333x222 pixels (limit 10000)");
  EXPECT_TRUE(ReadHeader(image, {}).refusal.ok());
}

// The download gate looks at a head as it doubles from 16 KiB. libpng read every chunk before
// the image data, allocating and zeroing each one's declared length first: a 1x1 header followed
// by a chunk declaring 45 MiB cost 45 MiB of memset per look (on the thread that runs every
// transfer), and the head still counted as "unknown". The size now comes from IHDR alone.
TEST(ReadHeaderTest, APngsSizeComesFromItsHeaderWhateverChunksFollow) {
  const std::string png = MakeImage(TestImage::kPngRgb, 1, 1);
  std::string head = png.substr(0, 33);  // signature and IHDR
  const uint32_t declared = 45u << 20;
  head += std::string{static_cast<char>(declared >> 24), static_cast<char>(declared >> 16),
                      static_cast<char>(declared >> 8), static_cast<char>(declared)};
  head += "prVt" + std::string(64 * 1024, 'x');
  const long rss_before = PeakRssKiB();
  const ImageHeader header = ReadHeader(head, {});
  EXPECT_EQ(header.pixels, 1u);
  EXPECT_TRUE(header.refusal.ok()) << header.refusal.message();
  EXPECT_LT(PeakRssKiB() - rss_before, 8 * 1024);
  // A broken IHDR is not a size: the whole file decides.
  std::string broken = head;
  broken[12] = 'X';
  EXPECT_EQ(ReadHeader(broken, {}).pixels, 0u);
}

// Refused from the header alone: decoding 20000x20000 would need 400 MB or more. (Memory is
// checked here; time is not, since timed assertions belong in bench/.)
TEST(CompressToJpegTest, RefusesADecompressionBombWithLittleMemory) {
  const std::string bomb = BlankPng(20'000, 20'000);
  ASSERT_LT(bomb.size(), 100'000u);
  const long rss_before = PeakRssKiB();
  ExpectRefused(bomb, "image too large: 20000x20000 pixels (limit 100000000)");
  EXPECT_LT(PeakRssKiB() - rss_before, 20 * 1024);
}

TEST(CompressToJpegTest, RefusesImagesWiderThanJpegAllows) {
  ExpectRefused(BlankPng(70'000, 1), "JPEG allows at most 65500 per side");
}

// Several pool threads run the codec at once: results must not depend on that, and errors must
// stay errors.
TEST(CompressToJpegTest, GivesIdenticalResultsFromConcurrentThreads) {
  std::vector<std::string> inputs;
  std::vector<std::string> expected;
  for (TestImage kind : imgproc::testing::kAllTestImages) {
    inputs.push_back(MakeImage(kind, kWidth, kHeight));
    expected.push_back(Compress(inputs.back()).bytes);
  }
  const std::string truncated = inputs.front().substr(0, inputs.front().size() / 2);

  constexpr int kThreads = 8;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < inputs.size(); ++i) {
          Result<EncodedImage> out = CompressToJpeg(inputs[(i + t) % inputs.size()], {});
          if (!out.ok() || out->bytes != expected[(i + t) % inputs.size()]) ++mismatches[t];
          Result<EncodedImage> bad = CompressToJpeg(truncated, {});
          if (bad.ok() || bad.status().message().empty()) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// Encode: other formats, qualities and sizes than the seed's JPEG.

using request::OutputFormat;
using request::OutputSettings;

OutputSettings Output(OutputFormat format, int quality = 50, int max_width = 0, int max_height = 0,
                      bool progressive = false) {
  return {.format = format,
          .quality = quality,
          .max_width = max_width,
          .max_height = max_height,
          .progressive = progressive};
}

EncodedImage EncodeOk(std::string_view data, const OutputSettings& output,
                      const CodecLimits& limits = {}) {
  Result<EncodedImage> result = Encode(data, output, limits);
  EXPECT_TRUE(result.ok()) << result.status().message();
  return result.ok() ? *result : EncodedImage{};
}

void ExpectEncodeRefused(std::string_view data, const OutputSettings& output, std::string_view text,
                         const CodecLimits& limits = {}) {
  Result<EncodedImage> result = Encode(data, output, limits);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kPermanent);
  EXPECT_NE(result.status().message().find(text), std::string::npos) << result.status().message();
}

// The format the bytes say they are, from their magic numbers alone.
std::string MagicFormat(std::string_view bytes) {
  if (bytes.starts_with("\xFF\xD8\xFF")) return "jpeg";
  if (bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") {
    return "webp";
  }
  // An ISO BMFF file: a box of type "ftyp" first, then the major brand.
  if (bytes.size() >= 12 && bytes.substr(4, 4) == "ftyp" && bytes.substr(8, 4) == "avif") {
    return "avif";
  }
  return "unknown";
}

// The width, height and bands a decoder finds in `bytes`.
struct DecodedHeader {
  int width = 0;
  int height = 0;
  int bands = 0;
};
DecodedHeader Header(std::string_view bytes) {
  VipsImagePtr image = Decoded(bytes);
  if (image == nullptr) return {};
  return {vips_image_get_width(image.get()), vips_image_get_height(image.get()),
          vips_image_get_bands(image.get())};
}

// The mean of band `band` of `bytes` decoded, over a rectangle.
double MeanOfBand(std::string_view bytes, int band, int left, int top, int width, int height) {
  VipsImagePtr image = Decoded(bytes);
  VipsImagePtr area = Made([&](VipsImage** out) {
    return vips_extract_area(image.get(), out, left, top, width, height, nullptr);
  });
  VipsImagePtr one =
      Made([&](VipsImage** out) { return vips_extract_band(area.get(), out, band, nullptr); });
  double mean = 0;
  EXPECT_EQ(vips_avg(one.get(), &mean, nullptr), 0) << vips_error_buffer();
  return mean;
}

constexpr OutputFormat kAllFormats[] = {OutputFormat::kJpeg, OutputFormat::kWebp,
                                        OutputFormat::kAvif};

TEST(EncodeTest, WritesTheFormatAskedFor) {
  const std::string input = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  for (OutputFormat format : kAllFormats) {
    for (int max_width : {0, 100}) {
      SCOPED_TRACE(std::string(request::ToString(format)) + " max_width " +
                   std::to_string(max_width));
      const EncodedImage out = EncodeOk(input, Output(format, 60, max_width));
      EXPECT_EQ(MagicFormat(out.bytes), request::ToString(format));
      EXPECT_EQ(out.format, format);
      EXPECT_EQ(out.source_format, "jpeg");
      const DecodedHeader header = Header(out.bytes);
      EXPECT_EQ(header.width, out.width);
      EXPECT_EQ(header.height, out.height);
    }
  }
}

// Every input kind, each through its loader's own shrink (JPEG's DCT scaling, WebP's scaler) or
// none: the same fit-inside dimensions, written in the output and reported.
TEST_P(EveryFormatTest, FitsInsideTheBoundsKeepingTheAspectRatio) {
  const std::string input = MakeImage(GetParam(), 1200, 800);
  const bool rotated = GetParam() == TestImage::kJpegExifRotate6;  // shown 800x1200
  struct Case {
    int max_width, max_height;
    int width, height;  // for a 1200x800 (landscape) input
  };
  const Case cases[] = {
      {400, 400, 400, 267},     // 800 * 400 / 1200 = 266.7
      {300, 0, 300, 200},       // width only
      {0, 100, 150, 100},       // height only
      {1000, 100, 150, 100},    // the height binds
      {60, 60, 60, 40},         // a shrink of 20: JPEG's largest DCT scaling, 1/8
      {1200, 800, 1200, 800},   // exactly the input
      {5000, 5000, 1200, 800},  // never enlarged
  };
  for (const Case& c : cases) {
    // A rotated input is shown portrait: its box is the landscape case's, turned.
    const int max_width = rotated ? c.max_height : c.max_width;
    const int max_height = rotated ? c.max_width : c.max_height;
    const int width = rotated ? c.height : c.width;
    const int height = rotated ? c.width : c.height;
    SCOPED_TRACE("fit " + std::to_string(max_width) + "x" + std::to_string(max_height));
    for (OutputFormat format : {OutputFormat::kJpeg, OutputFormat::kWebp}) {
      const EncodedImage out = EncodeOk(input, Output(format, 50, max_width, max_height));
      EXPECT_EQ(out.width, width);
      EXPECT_EQ(out.height, height);
      const DecodedHeader header = Header(out.bytes);
      EXPECT_EQ(header.width, width);
      EXPECT_EQ(header.height, height);
    }
  }
}

TEST(EncodeTest, FitsAPortraitImageInside) {
  const std::string input = MakeImage(TestImage::kJpegRgb, 800, 1200);
  const EncodedImage out = EncodeOk(input, Output(OutputFormat::kJpeg, 50, 400, 400));
  EXPECT_EQ(out.width, 267);
  EXPECT_EQ(out.height, 400);
}

// Sizes that are not simple fractions, and bounds that leave one pixel.
TEST(EncodeTest, RoundsTheFreeSideToTheNearestPixel) {
  const std::string input = MakeImage(TestImage::kJpegRgb, 1001, 667);
  EXPECT_EQ(EncodeOk(input, Output(OutputFormat::kJpeg, 50, 100)).height, 67);     // 66.63
  EXPECT_EQ(EncodeOk(input, Output(OutputFormat::kJpeg, 50, 0, 100)).width, 150);  // 150.07
  const std::string strip = MakeImage(TestImage::kPngRgb, 1000, 3);
  const EncodedImage thin = EncodeOk(strip, Output(OutputFormat::kWebp, 50, 10));
  EXPECT_EQ(thin.width, 10);
  EXPECT_EQ(thin.height, 1);  // 0.03, but at least one pixel
}

// Keeps its colours through the shrink, whatever the input's colour space or profile.
TEST_P(EveryFormatTest, KeepsColoursWhenResized) {
  const std::string input = MakeImage(GetParam(), 1200, 800);
  const std::string reference = MakeImage(TestImage::kPngRgb, 1200, 800);
  const bool rotated = GetParam() == TestImage::kJpegExifRotate6;
  const EncodedImage out = EncodeOk(input, Output(OutputFormat::kJpeg, 90, 300, 300));
  ASSERT_EQ(out.width, rotated ? 200 : 300);
  // A centred square a fifth of the short side: the same part of the picture at any size and
  // either orientation.
  const auto centre = [](std::string_view image, int width, int height) {
    const int side = std::min(width, height) / 5;
    return MeanRgb(image, (width - side) / 2, (height - side) / 2, side, side);
  };
  const auto actual = centre(out.bytes, out.width, out.height);
  const auto expected = centre(reference, 1200, 800);
  if (GetParam() == TestImage::kJpegGray) {
    EXPECT_NEAR(Brightness(actual), Brightness(expected), 12.0);
    return;
  }
  for (int band = 0; band < 3; ++band) {
    EXPECT_NEAR(actual[band], expected[band], 6.0) << "band " << band;
  }
}

TEST(EncodeTest, FitsAnExifRotatedImageInTheOrientedBox) {
  // Stored 1600x1200 landscape with orientation 6: shown 1200x1600, portrait.
  const std::string input = MakeImage(TestImage::kJpegExifRotate6, 1600, 1200);
  for (OutputFormat format : kAllFormats) {
    SCOPED_TRACE(request::ToString(format));
    const EncodedImage out = EncodeOk(input, Output(format, 80, 300, 300));
    ASSERT_EQ(out.width, 225);
    ASSERT_EQ(out.height, 300);
    const DecodedHeader header = Header(out.bytes);
    EXPECT_EQ(header.width, 225);
    EXPECT_EQ(header.height, 300);
    // Turned once, clockwise: the stored top-left dark corner (a quarter of each side) is now
    // the top-right one; turned twice, or not at all, it would be elsewhere.
    constexpr int kDarkWidth = 225 / 4;
    constexpr int kDarkHeight = 300 / 4;
    const auto corner = [&](int left, int top) {
      return Brightness(MeanRgb(out.bytes, left + 4, top + 4, kDarkWidth - 8, kDarkHeight - 8));
    };
    EXPECT_LT(corner(225 - kDarkWidth, 0), 30.0);
    EXPECT_GT(corner(0, 0), 80.0);
    EXPECT_GT(corner(225 - kDarkWidth, 300 - kDarkHeight), 80.0);
  }
}

// The transparent top-left quarter stays transparent in WebP and AVIF, and is white in JPEG;
// with a resize (alpha premultiplied) and without.
TEST(EncodeTest, KeepsAlphaInWebpAndAvifAndFlattensItInJpeg) {
  const std::string input = MakeImage(TestImage::kPngRgba, 400, 300);
  for (int max_width : {0, 200}) {
    SCOPED_TRACE("max_width " + std::to_string(max_width));
    const int width = max_width == 0 ? 400 : 200;
    const int height = max_width == 0 ? 300 : 150;
    // Inside the transparent quarter and inside the opaque rest, clear of the edge between.
    const auto transparent = [&](std::string_view bytes, int band) {
      return MeanOfBand(bytes, band, 4, 4, width / 4 - 8, height / 4 - 8);
    };
    const auto opaque = [&](std::string_view bytes, int band) {
      return MeanOfBand(bytes, band, width / 2, height / 2, width / 4, height / 4);
    };
    for (OutputFormat format : {OutputFormat::kWebp, OutputFormat::kAvif}) {
      SCOPED_TRACE(request::ToString(format));
      const EncodedImage out = EncodeOk(input, Output(format, 80, max_width));
      ASSERT_EQ(Header(out.bytes).bands, 4);
      EXPECT_LT(transparent(out.bytes, 3), 5.0);
      EXPECT_GT(opaque(out.bytes, 3), 250.0);
    }
    const EncodedImage jpeg = EncodeOk(input, Output(OutputFormat::kJpeg, 80, max_width));
    ASSERT_EQ(Header(jpeg.bytes).bands, 3);
    for (int band = 0; band < 3; ++band) EXPECT_GT(transparent(jpeg.bytes, band), 250.0);
    EXPECT_LT(Brightness(CentreMean(jpeg.bytes, width, height)), 220.0);  // opaque: not white
  }
}

// Resizing mixes transparent pixels into their opaque neighbours: premultiplied, their colour
// (black in the test image) does not darken the edge, which flattening then shows.
TEST(EncodeTest, ResizesTransparencyWithoutDarkFringes) {
  const std::string input = MakeImage(TestImage::kPngRgba, 800, 600);
  const EncodedImage out = EncodeOk(input, Output(OutputFormat::kJpeg, 90, 100));
  ASSERT_EQ(out.width, 100);
  // The column just right of the transparent quarter's edge (x = 25 at this size), its top part.
  const auto edge = MeanRgb(out.bytes, 25, 2, 2, 10);
  const auto inside = MeanRgb(out.bytes, 30, 2, 4, 10);
  EXPECT_GT(Brightness(edge), Brightness(inside) - 25);
}

TEST(EncodeTest, WritesProgressiveJpegOnlyWhenAsked) {
  const std::string input = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  for (int max_width : {0, 200}) {
    SCOPED_TRACE("max_width " + std::to_string(max_width));
    const EncodedImage baseline = EncodeOk(input, Output(OutputFormat::kJpeg, 80, max_width));
    const EncodedImage progressive =
        EncodeOk(input, Output(OutputFormat::kJpeg, 80, max_width, 0, /*progressive=*/true));
    // SOF0 and SOF2 respectively.
    EXPECT_FALSE(Inspect(baseline.bytes).progressive);
    EXPECT_TRUE(Inspect(progressive.bytes).progressive);
    EXPECT_FALSE(progressive.fast_path);  // the DCT fast path writes baseline JPEG only
    EXPECT_EQ(Inspect(progressive.bytes).luma_table, StandardLumaTable(80));
    if (max_width == 0) {  // the same picture as the input
      EXPECT_GT(imgproc::testing::Psnr(progressive.bytes, input), 30.0);
    }
  }
}

TEST(EncodeTest, HigherQualityGivesLargerFiles) {
  const std::string input = MakeImage(TestImage::kJpegRgb, 800, 600);
  for (OutputFormat format : kAllFormats) {
    for (int max_width : {0, 400}) {
      SCOPED_TRACE(std::string(request::ToString(format)) + " max_width " +
                   std::to_string(max_width));
      const size_t low = EncodeOk(input, Output(format, 30, max_width)).bytes.size();
      const size_t high = EncodeOk(input, Output(format, 90, max_width)).bytes.size();
      EXPECT_GT(high, low * 3 / 2);
    }
  }
}

TEST(EncodeTest, UsesTheOutputsQualityNotTheLimits) {
  const std::string input = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  CodecLimits limits;
  limits.jpeg_quality = 30;
  for (int max_width : {0, 200}) {
    const EncodedImage out = EncodeOk(input, Output(OutputFormat::kJpeg, 80, max_width), limits);
    EXPECT_EQ(Inspect(out.bytes).luma_table, StandardLumaTable(80)) << max_width;
  }
}

// The seed's settings are CompressToJpeg's: the same bytes, fast paths included (JPEG 4:2:0 in
// the DCT domain, PNG through libdeflate), for every input kind and a second quality.
TEST_P(EveryFormatTest, GivesCompressToJpegsBytesForTheSeedSettings) {
  const std::string input = MakeImage(GetParam(), kWidth, kHeight);
  for (int quality : {50, 80}) {
    CodecLimits limits;
    limits.jpeg_quality = quality;
    const EncodedImage expected = Compress(input, limits);
    const EncodedImage out = EncodeOk(input, Output(OutputFormat::kJpeg, quality), limits);
    EXPECT_EQ(out.bytes, expected.bytes) << quality;
    EXPECT_EQ(out.fast_path, expected.fast_path);
    EXPECT_EQ(out.format, OutputFormat::kJpeg);
    // Bounds the image already fits inside change nothing either.
    const EncodedImage unbound =
        EncodeOk(input, Output(OutputFormat::kJpeg, quality, kWidth, kHeight * 2), limits);
    EXPECT_EQ(unbound.bytes, expected.bytes) << quality;
  }
  EXPECT_EQ(EncodeOk(input, OutputSettings{}).bytes, Compress(input).bytes);
}

TEST(EncodeTest, TakesTheFastPathsOnlyForABaselineJpegAtTheInputsSize) {
  const std::string jpeg = MakeImage(TestImage::kJpegRgb, kWidth, kHeight);
  const std::string png = MakeImage(TestImage::kPngRgb, kWidth, kHeight);
  for (const std::string& input : {jpeg, png}) {
    EXPECT_TRUE(EncodeOk(input, Output(OutputFormat::kJpeg, 70)).fast_path);
    EXPECT_FALSE(EncodeOk(input, Output(OutputFormat::kJpeg, 70, 200)).fast_path);
    EXPECT_FALSE(EncodeOk(input, Output(OutputFormat::kJpeg, 70, 0, 0, true)).fast_path);
    EXPECT_FALSE(EncodeOk(input, Output(OutputFormat::kWebp, 70)).fast_path);
  }
}

// Damage is refused whatever the output: a cut or corrupted JPEG shrunk while decoding (libjpeg
// still decodes every coefficient, and warns), and every other format cut in half.
TEST(EncodeTest, RefusesDamagedJpegsWhenResizing) {
  for (TestImage kind : {TestImage::kJpegRgb, TestImage::kJpeg444, TestImage::kJpegProgressive}) {
    SCOPED_TRACE(TestImageName(kind));
    const std::string jpeg = MakeImage(kind, 1200, 800);
    for (OutputFormat format : kAllFormats) {
      for (int max_width : {900, 100}) {  // shrunk by 1 and by 8 while decoding
        SCOPED_TRACE(std::string(request::ToString(format)) + " " + std::to_string(max_width));
        const OutputSettings output = Output(format, 50, max_width);
        ExpectEncodeRefused(std::string_view(jpeg).substr(0, jpeg.size() / 2), output,
                            "corrupt or truncated image: ");
        ExpectEncodeRefused(imgproc::testing::CutJpeg(jpeg), output,
                            "corrupt or truncated image: ");
        ExpectEncodeRefused(imgproc::testing::CorruptJpeg(jpeg, 2'000), output,
                            "corrupt or truncated image: ");
      }
    }
  }
}

TEST_P(EveryFormatTest, RefusesTheFirstHalfOfTheFileWhenResizing) {
  const std::string image = MakeImage(GetParam(), 1200, 800);
  for (OutputFormat format : kAllFormats) {
    SCOPED_TRACE(request::ToString(format));
    ExpectEncodeRefused(image.substr(0, image.size() / 2), Output(format, 50, 300), "");
  }
}

// The harmless warnings that real cameras' files have do not cost the image when shrunk either.
TEST(EncodeTest, AcceptsJpegsWithStrayBytesWhenResizing) {
  const std::string jpeg = MakeImage(TestImage::kJpegRgb, 1200, 800);
  const std::string junk = imgproc::testing::WithJunkBefore(jpeg, 0xD9, "junk");
  for (int max_width : {900, 100}) {  // shrunk by 1 and by 8 while decoding
    const EncodedImage clean = EncodeOk(jpeg, Output(OutputFormat::kWebp, 80, max_width));
    const EncodedImage out = EncodeOk(junk, Output(OutputFormat::kWebp, 80, max_width));
    EXPECT_EQ(out.width, max_width);
    EXPECT_GT(imgproc::testing::Psnr(out.bytes, clean.bytes), 40) << max_width;
  }
}

// Limits are judged on the input's header, before any decoding, whatever the output's size.
TEST(EncodeTest, RefusesImagesOverTheLimitsWhenResizing) {
  CodecLimits limits;
  limits.max_pixels = 10'000;
  // Made before the peak is read: making it is not what is measured.
  const std::string bomb = BlankPng(20'000, 20'000);
  for (OutputFormat format : kAllFormats) {
    SCOPED_TRACE(request::ToString(format));
    ExpectEncodeRefused(MakeImage(TestImage::kJpegRgb, kWidth, kHeight), Output(format, 50, 50),
                        "image too large: 333x222 pixels (limit 10000)", limits);
    const long rss_before = PeakRssKiB();
    ExpectEncodeRefused(bomb, Output(format, 50, 100, 100),
                        "image too large: 20000x20000 pixels (limit 100000000)");
    EXPECT_LT(PeakRssKiB() - rss_before, 20 * 1024);
    ExpectEncodeRefused(BlankPng(70'000, 1), Output(format, 50, 100),
                        "JPEG allows at most 65500 per side");
  }
  CodecLimits frames;
  frames.max_frames = 5;
  ExpectEncodeRefused(AnimatedGif(6), Output(OutputFormat::kWebp, 50, 8),
                      "too many frames: 6 (limit 5)", frames);
}

TEST(EncodeTest, RefusesAWebpLargerThanWebpAllowsUnlessBounded) {
  const std::string wide = BlankPng(20'000, 10);
  ExpectEncodeRefused(wide, Output(OutputFormat::kWebp, 50),
                      "image too large: 20000x10 pixels (WebP allows at most 16383 per side)");
  const EncodedImage fitted = EncodeOk(wide, Output(OutputFormat::kWebp, 50, 16'000));
  EXPECT_EQ(fitted.width, 16'000);
  EXPECT_EQ(fitted.height, 8);
  EXPECT_EQ(EncodeOk(wide, Output(OutputFormat::kJpeg, 50)).width, 20'000);
}

TEST(EncodeTest, RefusesWhatCompressToJpegRefuses) {
  for (OutputFormat format : kAllFormats) {
    SCOPED_TRACE(request::ToString(format));
    ExpectEncodeRefused("", Output(format, 50, 10), "not an image (empty)");
    ExpectEncodeRefused("<!DOCTYPE html>\n<html></html>\n", Output(format, 50, 10),
                        "not an image (unrecognised format)");
    ExpectEncodeRefused(R"(<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>)",
                        Output(format, 50, 10), "unsupported image format: svg");
  }
}

TEST(EncodeTest, StripsMetadata) {
  const std::string input = MakeImage(TestImage::kJpegExifRotate6, kWidth, kHeight);
  const std::string profiled = JpegWithProfile(MakeImage(TestImage::kPngRgb, 400, 300), "p3");
  for (OutputFormat format : kAllFormats) {
    for (int max_width : {0, 100}) {
      SCOPED_TRACE(std::string(request::ToString(format)) + " " + std::to_string(max_width));
      for (const std::string& in : {input, profiled}) {
        VipsImagePtr out = Decoded(EncodeOk(in, Output(format, 50, max_width)).bytes);
        EXPECT_EQ(vips_image_get_typeof(out.get(), VIPS_META_EXIF_NAME), 0u);
        EXPECT_EQ(vips_image_get_typeof(out.get(), VIPS_META_ICC_NAME), 0u);
        EXPECT_EQ(vips_image_get_orientation(out.get()), 1);
      }
    }
  }
}

TEST(EncodeTest, RefusesSettingsOutOfRange) {
  const std::string input = MakeImage(TestImage::kJpegRgb, 16, 16);
  for (const OutputSettings& output :
       {Output(OutputFormat::kJpeg, 0), Output(OutputFormat::kWebp, 101),
        Output(OutputFormat::kAvif, 50, -1)}) {
    Result<EncodedImage> result = Encode(input, output, {});
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), StatusCode::kInternal);
  }
}

// The generated inputs really are what the tests take them for.
TEST(TestImagesTest, AreWhatTheyClaim) {
  const auto inspect = [](TestImage kind) { return Inspect(MakeImage(kind, 64, 48)); };
  EXPECT_EQ(inspect(TestImage::kJpegRgb).components, 3);
  EXPECT_FALSE(inspect(TestImage::kJpegRgb).progressive);
  EXPECT_TRUE(inspect(TestImage::kJpegProgressive).progressive);
  EXPECT_EQ(inspect(TestImage::kJpegRgb).luma_sampling, std::make_pair(2, 2));
  EXPECT_EQ(inspect(TestImage::kJpegProgressive).luma_sampling, std::make_pair(2, 2));
  EXPECT_EQ(inspect(TestImage::kJpeg444).luma_sampling, std::make_pair(1, 1));
  EXPECT_EQ(inspect(TestImage::kJpegCmyk).components, 4);
  EXPECT_FALSE(inspect(TestImage::kJpegCmyk).has_icc);
  EXPECT_EQ(inspect(TestImage::kJpegGray).components, 1);
  EXPECT_TRUE(inspect(TestImage::kJpegExifRotate6).has_exif);
  EXPECT_EQ(inspect(TestImage::kJpegExifRotate6).width, 64);
  EXPECT_EQ(InspectJpeg(MakeImage(TestImage::kPngRgb, 64, 48)), std::nullopt);
}

TEST(TestImagesTest, StandardLumaTableFollowsLibjpeg) {
  EXPECT_EQ(StandardLumaTable(50)[0], 16);  // quality 50 is the base table itself
  EXPECT_EQ(StandardLumaTable(50)[63], 99);
  EXPECT_EQ(StandardLumaTable(75)[0], 8);    // (16 * 50 + 50) / 100
  EXPECT_EQ(StandardLumaTable(100)[63], 1);  // scale 0, clamped to 1
  EXPECT_EQ(StandardLumaTable(1)[0], 255);   // scale 5000, clamped for baseline
}

}  // namespace
}  // namespace imgproc::pipeline
