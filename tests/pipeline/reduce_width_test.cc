#include "pipeline/reduce_width.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "vips_image.h"

namespace imgproc::pipeline {
namespace {

using testing::EnsureVips;
using testing::RunVips;
using testing::VipsImg;

// An image of random bytes, `width` x `height` x `bands`, with smooth runs beside noise so that
// the sums reach both ends (clipped below 0 and above 255 by Lanczos' negative lobes).
VipsImg RandomImage(int width, int height, int bands, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(width) * height * bands);
  for (size_t i = 0; i < bytes.size(); ++i) {
    const bool edge = (i / 7) % 3 == 0;  // hard steps between black and white
    bytes[i] = edge ? static_cast<uint8_t>(random() % 2 == 0 ? 0 : 255)
                    : static_cast<uint8_t>(random() % 256);
  }
  VipsImg memory(vips_image_new_from_memory_copy(bytes.data(), bytes.size(), width, height, bands,
                                                 VIPS_FORMAT_UCHAR));
  if (memory.get() == nullptr) testing::VipsFailed("vips_image_new_from_memory_copy");
  return memory;
}

std::string Pixels(const VipsImg& image) {
  size_t size = 0;
  void* memory = vips_image_write_to_memory(image.get(), &size);
  if (memory == nullptr) testing::VipsFailed("vips_image_write_to_memory");
  std::string bytes(static_cast<const char*>(memory), size);
  g_free(memory);
  return bytes;
}

// Where two images' bytes first differ ("same" when they do not), rather than both dumps.
std::string FirstDifference(const std::string& a, const std::string& b) {
  if (a.size() != b.size())
    return "sizes " + std::to_string(a.size()) + ", " + std::to_string(b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "byte " + std::to_string(i) + ": " + std::to_string(static_cast<uint8_t>(a[i])) +
             " against " + std::to_string(static_cast<uint8_t>(b[i]));
    }
  }
  return "same";
}

class ReduceWidthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EnsureVips();
    if (!ReducesWidth(RandomImage(4, 1, 3, 0).get())) {
      GTEST_SKIP() << "no SSSE3 on this CPU: the codec uses vips_reduceh";
    }
  }
};

// The same pixels as libvips 8.14's vips_reduceh as vips_resize calls it, for every band count,
// for shrinks that round the width down or up, that give odd and even masks, that take the
// integer shrink first (4 and more), and for images narrower than the mask.
TEST_F(ReduceWidthTest, GivesVipsReducehsPixels) {
  const int widths[] = {1, 2, 5, 17, 433, 866, 1732};
  const double shrinks[] = {1.0,   1.0001, 1.0825, 1.3333, 1.5, 1.99, 2.0,
                            2.165, 3.01,   3.999,  4.0,    4.6, 9.7,  31.5};
  int compared = 0;
  for (int bands = 1; bands <= 4; ++bands) {
    for (int width : widths) {
      for (double shrink : shrinks) {
        if (width / shrink < 0.5) continue;  // shrunk to nothing: both refuse
        SCOPED_TRACE("bands " + std::to_string(bands) + ", width " + std::to_string(width) +
                     ", shrink " + std::to_string(shrink));
        const VipsImg in = RandomImage(width, 3, bands, static_cast<uint32_t>(width * bands));
        const VipsImg expected = RunVips("vips_reduceh", [&](VipsImage** out) {
          return vips_reduceh(in.get(), out, shrink, "gap", 2.0, nullptr);
        });
        const VipsImg actual = RunVips(
            "ReduceWidth", [&](VipsImage** out) { return ReduceWidth(in.get(), out, shrink); });
        ASSERT_EQ(vips_image_get_width(actual.get()), vips_image_get_width(expected.get()));
        ASSERT_EQ(vips_image_get_height(actual.get()), 3);
        ASSERT_EQ(vips_image_get_bands(actual.get()), bands);
        ASSERT_EQ(FirstDifference(Pixels(actual), Pixels(expected)), "same");
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 300);
}

// A photo-sized reduce, read in the small regions a sequential pipeline asks for: the same bytes
// as libvips' whole.
TEST_F(ReduceWidthTest, GivesTheSamePixelsRegionByRegion) {
  const VipsImg in = RandomImage(866, 534, 3, 7);
  const VipsImg expected = RunVips("vips_reduceh", [&](VipsImage** out) {
    return vips_reduceh(in.get(), out, 866.0 / 800, "gap", 2.0, nullptr);
  });
  const VipsImg actual = RunVips(
      "ReduceWidth", [&](VipsImage** out) { return ReduceWidth(in.get(), out, 866.0 / 800); });
  // Through a tiled cache, so the output is made in 64 x 64 tiles, each reading its own margin.
  const VipsImg tiled = RunVips("vips_tilecache", [&](VipsImage** out) {
    return vips_tilecache(actual.get(), out, "tile_width", 64, "tile_height", 64, nullptr);
  });
  EXPECT_EQ(vips_image_get_width(actual.get()), 800);
  EXPECT_EQ(FirstDifference(Pixels(tiled), Pixels(expected)), "same");
}

// The codec's resize: vips_resize's pixels, for the shrinks of the codec's fits (by 2 on load,
// then to 800 or 400 pixels; a PNG whole) and a thumbnail of a narrow strip.
TEST_F(ReduceWidthTest, ResizeDownGivesVipsResizesPixels) {
  struct Case {
    int width, height, target_width, target_height;
  };
  const Case cases[] = {{866, 578, 800, 534},   {433, 289, 400, 267}, {1732, 1155, 800, 533},
                        {1155, 1732, 533, 800}, {640, 3, 37, 1},      {5, 400, 5, 100}};
  for (int bands : {1, 3, 4}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::to_string(bands) + " bands, " + std::to_string(c.width) + "x" +
                   std::to_string(c.height) + " to " + std::to_string(c.target_width) + "x" +
                   std::to_string(c.target_height));
      const VipsImg in = RandomImage(c.width, c.height, bands, static_cast<uint32_t>(c.width));
      const double hscale = static_cast<double>(c.target_width) / c.width;
      const double vscale = static_cast<double>(c.target_height) / c.height;
      const VipsImg expected = RunVips("vips_resize", [&](VipsImage** out) {
        return vips_resize(in.get(), out, hscale, "vscale", vscale, nullptr);
      });
      const VipsImg actual = RunVips(
          "ResizeDown", [&](VipsImage** out) { return ResizeDown(in.get(), out, hscale, vscale); });
      EXPECT_EQ(vips_image_get_width(actual.get()), c.target_width);
      EXPECT_EQ(vips_image_get_height(actual.get()), c.target_height);
      EXPECT_EQ(FirstDifference(Pixels(actual), Pixels(expected)), "same");
    }
  }
}

TEST_F(ReduceWidthTest, RefusesWhatItDoesNotTake) {
  const VipsImg rgba_short = RunVips("vips_cast", [&](VipsImage** out) {
    return vips_cast(RandomImage(8, 2, 4, 1).get(), out, VIPS_FORMAT_USHORT, nullptr);
  });
  EXPECT_FALSE(ReducesWidth(rgba_short.get()));
  const VipsImg five_bands = RandomImage(8, 2, 5, 1);
  EXPECT_FALSE(ReducesWidth(five_bands.get()));
  VipsImage* out = nullptr;
  EXPECT_NE(ReduceWidth(five_bands.get(), &out, 2.0), 0);
  EXPECT_EQ(out, nullptr);
  vips_error_clear();
  const VipsImg rgb = RandomImage(8, 2, 3, 1);
  EXPECT_NE(ReduceWidth(rgb.get(), &out, 0.5), 0);  // enlarging is not a reduce
  EXPECT_EQ(out, nullptr);
  vips_error_clear();
}

}  // namespace
}  // namespace imgproc::pipeline
