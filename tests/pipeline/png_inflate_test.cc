#include "pipeline/png_inflate.h"

#include <gtest/gtest.h>
#include <vips/vips.h>
#include <zlib.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/image_codec.h"
#include "test_images.h"
#include "vips_image.h"

namespace imgproc::pipeline {
namespace {

using imgproc::testing::MakeImage;
using imgproc::testing::TestImage;
using imgproc::testing::VipsImg;

constexpr size_t kNoLimit = size_t{1} << 30;

struct Chunk {
  std::string type;
  std::string data;
};

uint32_t ReadBe32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<unsigned char>(s[at])} << 24) |
         (uint32_t{static_cast<unsigned char>(s[at + 1])} << 16) |
         (uint32_t{static_cast<unsigned char>(s[at + 2])} << 8) |
         uint32_t{static_cast<unsigned char>(s[at + 3])};
}

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// The chunks of a well-formed PNG.
std::vector<Chunk> Chunks(const std::string& png) {
  std::vector<Chunk> chunks;
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t length = ReadBe32(png, at);
    chunks.push_back({png.substr(at + 4, 4), png.substr(at + 8, length)});
    at += 12 + length;
  }
  return chunks;
}

// A PNG of `chunks`, each with its correct CRC.
std::string Assemble(const std::vector<Chunk>& chunks) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  for (const Chunk& c : chunks) {
    const std::string typed = c.type + c.data;
    png += Be32(static_cast<uint32_t>(c.data.size())) + typed +
           Be32(static_cast<uint32_t>(
               crc32(0, reinterpret_cast<const Bytef*>(typed.data()), typed.size())));
  }
  return png;
}

// Decoded pixels with their layout, to compare two PNGs by what they show.
struct Pixels {
  int width = 0, height = 0, bands = 0, format = 0;
  std::string bytes;
  bool operator==(const Pixels&) const = default;
};

Pixels Decode(const std::string& png) {
  imgproc::testing::EnsureVips();
  VipsImg image(vips_image_new_from_buffer(png.data(), png.size(), "", nullptr));
  if (image.get() == nullptr) imgproc::testing::VipsFailed("decode");
  size_t size = 0;
  void* memory = vips_image_write_to_memory(image.get(), &size);
  if (memory == nullptr) imgproc::testing::VipsFailed("write_to_memory");
  Pixels p{vips_image_get_width(image.get()), vips_image_get_height(image.get()),
           vips_image_get_bands(image.get()), vips_image_get_format(image.get()),
           std::string(static_cast<const char*>(memory), size)};
  g_free(memory);
  return p;
}

std::string OneBitGrey(int width, int height) {
  imgproc::testing::EnsureVips();
  VipsImg xy = imgproc::testing::RunVips(
      "xyz", [&](VipsImage** out) { return vips_xyz(out, width, height, nullptr); });
  VipsImg grey = imgproc::testing::Cast(
      imgproc::testing::Linear(imgproc::testing::Band(xy, 0), 255.0 / width, 0), VIPS_FORMAT_UCHAR);
  return imgproc::testing::Encode("pngsave", [&](void** buffer, size_t* length) {
    return vips_pngsave_buffer(grey.get(), buffer, length, "bitdepth", 1, nullptr);
  });
}

// The bytes a zlib stream holds when it is made of stored (uncompressed) blocks only, else 0.
size_t StoredBytes(const std::string& stream) {
  size_t total = 0;
  for (size_t at = 2; at + 5 <= stream.size();) {
    const auto header = static_cast<unsigned char>(stream[at]);
    if ((header >> 1) != 0) return 0;  // BTYPE other than 00
    const size_t length = static_cast<unsigned char>(stream[at + 1]) |
                          (size_t{static_cast<unsigned char>(stream[at + 2])} << 8);
    total += length;
    at += 5 + length;
    if ((header & 1) != 0) return at + 4 == stream.size() ? total : 0;  // then the Adler-32
  }
  return 0;
}

// What zlib inflates `stream` to ("" if it fails).
std::string Inflated(const std::string& stream) {
  std::string out(16 << 20, '\0');
  uLongf size = out.size();
  if (uncompress(reinterpret_cast<Bytef*>(out.data()), &size,
                 reinterpret_cast<const Bytef*>(stream.data()), stream.size()) != Z_OK) {
    return "";
  }
  out.resize(size);
  return out;
}

TEST(InflatePngTest, KeepsThePixelsOfEveryKindAndStoresThemUncompressed) {
  // 1x1 and 3x2 fit one stored block; 300x250 RGB is 225 KiB, four blocks, and is written by
  // libpng as many 8 KiB IDAT chunks.
  for (auto [width, height] : {std::pair{1, 1}, std::pair{3, 2}, std::pair{300, 250}}) {
    std::vector<std::pair<std::string, std::string>> inputs = {
        {"1-bit grey", OneBitGrey(width, height)}};
    for (TestImage kind :
         {TestImage::kPngRgb, TestImage::kPngRgba, TestImage::kPngPalette, TestImage::kPng16}) {
      inputs.emplace_back(imgproc::testing::TestImageName(kind), MakeImage(kind, width, height));
    }
    for (const auto& [name, png] : inputs) {
      SCOPED_TRACE(name + " " + std::to_string(width) + "x" + std::to_string(height));
      const std::optional<std::string> inflated = InflatePng(png, kNoLimit);
      ASSERT_TRUE(inflated.has_value());
      EXPECT_EQ(Decode(*inflated), Decode(png));
      std::string stream;
      for (const Chunk& c : Chunks(*inflated)) {
        if (c.type == "IDAT") stream += c.data;
      }
      EXPECT_GT(StoredBytes(stream), 0u);
      EXPECT_EQ(StoredBytes(stream), Inflated(stream).size());
      // Every other chunk is kept, in order.
      std::vector<std::string> before, after;
      for (const Chunk& c : Chunks(png)) {
        if (c.type != "IDAT") before.push_back(c.type + c.data);
      }
      for (const Chunk& c : Chunks(*inflated)) {
        if (c.type != "IDAT") after.push_back(c.type + c.data);
      }
      EXPECT_EQ(after, before);
    }
  }
}

TEST(InflatePngTest, GivesTheSameJpegAsLibpngAlone) {
  CodecLimits without;
  without.png_fast_path = false;
  for (TestImage kind : {TestImage::kPngRgb, TestImage::kPngRgba, TestImage::kPngPalette}) {
    SCOPED_TRACE(imgproc::testing::TestImageName(kind));
    const std::string png = MakeImage(kind, 257, 129);
    const auto fast = CompressToJpeg(png, CodecLimits{});
    const auto plain = CompressToJpeg(png, without);
    ASSERT_TRUE(fast.ok());
    ASSERT_TRUE(plain.ok());
    EXPECT_TRUE(fast->fast_path);
    EXPECT_FALSE(plain->fast_path);
    EXPECT_EQ(fast->bytes, plain->bytes);
  }
}

TEST(InflatePngTest, LeavesInterlacedAndOversizedPngsToLibpng) {
  imgproc::testing::EnsureVips();
  const std::string plain = MakeImage(TestImage::kPngRgb, 40, 30);
  VipsImg decoded(vips_image_new_from_buffer(plain.data(), plain.size(), "", nullptr));
  const std::string interlaced = imgproc::testing::Encode("pngsave", [&](void** b, size_t* n) {
    return vips_pngsave_buffer(decoded.get(), b, n, "interlace", TRUE, nullptr);
  });
  EXPECT_EQ(InflatePng(interlaced, kNoLimit), std::nullopt);
  // 30 rows of a filter byte and 40 RGB pixels.
  EXPECT_EQ(InflatePng(plain, 30 * 121 - 1), std::nullopt);
  EXPECT_NE(InflatePng(plain, 30 * 121), std::nullopt);
}

TEST(InflatePngTest, GivesUpOnAnythingNotExactlyRight) {
  const std::string png = MakeImage(TestImage::kPngRgb, 64, 48);
  ASSERT_NE(InflatePng(png, kNoLimit), std::nullopt);
  const std::vector<Chunk> chunks = Chunks(png);
  const auto with = [&](auto change) {
    std::vector<Chunk> changed = chunks;
    change(changed);
    return Assemble(changed);
  };
  size_t first = 0;
  size_t last = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].type != "IDAT") continue;
    if (first == 0) first = i;
    last = i;
  }
  ASSERT_GT(first, 0u);
  ASSERT_NE(InflatePng(with([](auto&) {}), kNoLimit), std::nullopt);  // Assemble is faithful

  std::string bad_crc = png;
  bad_crc[bad_crc.find("IDAT") + 10] ^= 0x10;  // data changed, CRC not
  EXPECT_EQ(InflatePng(bad_crc, kNoLimit), std::nullopt) << "CRC";
  EXPECT_EQ(InflatePng(with([&](auto& c) { c[first].data[20] ^= 0x55; }), kNoLimit), std::nullopt)
      << "damaged stream, correct CRC";
  EXPECT_EQ(InflatePng(with([&](auto& c) { c[last].data += "junk"; }), kNoLimit), std::nullopt)
      << "data after the stream";
  // A taller header: the stream ends early.
  EXPECT_EQ(InflatePng(with([](auto& c) { c[0].data[7] += 1; }), kNoLimit), std::nullopt)
      << "short stream";
  // Two runs of IDAT chunks.
  EXPECT_EQ(InflatePng(with([&](auto& c) {
                         Chunk& idat = c[first];
                         const std::string tail = idat.data.substr(idat.data.size() / 2);
                         idat.data.resize(idat.data.size() / 2);
                         c.insert(c.end() - 1, {{"tEXt", std::string("a\0b", 3)}, {"IDAT", tail}});
                       }),
                       kNoLimit),
            std::nullopt)
      << "IDAT, tEXt, IDAT";
  EXPECT_EQ(InflatePng(png.substr(0, png.size() / 2), kNoLimit), std::nullopt) << "truncated";
  EXPECT_EQ(InflatePng(png.substr(0, png.size() - 12), kNoLimit), std::nullopt) << "no IEND";
  EXPECT_EQ(InflatePng(MakeImage(TestImage::kJpegRgb, 8, 8), kNoLimit), std::nullopt) << "JPEG";
  EXPECT_EQ(InflatePng("", kNoLimit), std::nullopt) << "empty";
}

}  // namespace
}  // namespace imgproc::pipeline
