#include "corpus.h"

#include <vips/vips.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

#include "vips_image.h"

namespace imgproc::bench {
namespace {

using testing::Add;
using testing::Band;
using testing::Cast;
using testing::Encode;
using testing::Linear;
using testing::Memory;
using testing::RunVips;
using testing::Tag;
using testing::VipsFailed;
using testing::VipsImg;

// Sum of Perlin noise octaves of width x height: (cell size in pixels, amplitude) pairs.
VipsImg Octaves(int width, int height, const std::vector<std::pair<int, double>>& octaves,
                int seed) {
  VipsImg sum(nullptr);
  for (size_t k = 0; k < octaves.size(); ++k) {
    const auto [cell, amplitude] = octaves[k];
    VipsImg layer =
        Linear(RunVips("perlin",
                       [&](VipsImage** out) {
                         return vips_perlin(out, width, height, "cell_size", std::max(cell, 2),
                                            "seed", seed + static_cast<int>(k), nullptr);
                       }),
               amplitude, 0);
    sum = sum.get() == nullptr ? std::move(layer) : Add(sum, layer);
  }
  return sum;
}

// Sensor-like noise (standard deviation about 2.5, triangular distribution) with a fixed seed:
// splitmix64 in a plain loop, ten times quicker than vips_gaussnoise at 12 MP.
VipsImg Noise(int width, int height, uint64_t seed) {
  std::vector<float> samples(static_cast<size_t>(width) * static_cast<size_t>(height));
  uint64_t state = seed;
  for (float& sample : samples) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    // Two 16-bit uniforms in [-0.5, 0.5): their sum is triangular with variance 1/6.
    const float a = static_cast<float>(z & 0xffff) / 65536.0F - 0.5F;
    const float b = static_cast<float>((z >> 16) & 0xffff) / 65536.0F - 0.5F;
    sample = (a + b) * 6.1F;
  }
  VipsImage* image = vips_image_new_from_memory_copy(samples.data(), samples.size() * sizeof(float),
                                                     width, height, 1, VIPS_FORMAT_FLOAT);
  if (image == nullptr) VipsFailed("new_from_memory_copy");
  return VipsImg(image);
}

// `in` scaled up `factor` times (bicubic) and cropped to width x height.
VipsImg Upscale(const VipsImg& in, int factor, int width, int height) {
  if (factor == 1)
    return RunVips("copy", [&](VipsImage** out) { return vips_copy(in.get(), out, nullptr); });
  VipsImg big = RunVips("resize", [&](VipsImage** out) {
    return vips_resize(in.get(), out, static_cast<double>(factor), "kernel", VIPS_KERNEL_LINEAR,
                       nullptr);
  });
  return RunVips("extract_area", [&](VipsImage** out) {
    return vips_extract_area(big.get(), out, 0, 0, width, height, nullptr);
  });
}

// Image number `index` of width x height as 8-bit sRGB in memory. A luminance texture from coarse
// to fine (cells relative to the picture, plus a fixed fine grain), smoother per-channel colour
// textures (chroma carries less detail than luma in a photo), colour gradients and a little
// sensor noise. The coarse layers are made at 1/factor of the size and scaled up (they are smooth
// anyway): it keeps generating the 12 MP images quick.
VipsImg Photo(int width, int height, int index) {
  const int seed = 1000 * (index + 1);
  const int factor = std::max(1, width / 640);
  const int small_width = width / factor + 2;
  const int small_height = height / factor + 2;
  const int cell = small_width;  // cells of the coarse layers relative to the picture
  VipsImg coarse_luma =
      Octaves(small_width, small_height, {{cell / 5, 55}, {cell / 20, 28}, {cell / 80, 16}}, seed);
  VipsImg fine_luma = Octaves(width, height, {{6, 12}, {3, 7}}, seed + 10);
  VipsImg noise = Noise(width, height, static_cast<uint64_t>(seed));
  VipsImg grain = Add(fine_luma, noise);
  VipsImg xy = RunVips(
      "xyz", [&](VipsImage** out) { return vips_xyz(out, small_width, small_height, nullptr); });
  VipsImg x = Band(xy, 0);
  VipsImg y = Band(xy, 1);
  // Per channel: offset + luma texture + colour texture + a gradient (small), + grain (full size).
  const double gradient_x[] = {40, -20, 10};
  const double gradient_y[] = {-10, 30, -35};
  const double offset[] = {120, 115, 105};
  std::vector<VipsImg> channels;
  for (int c = 0; c < 3; ++c) {
    VipsImg colour =
        Octaves(small_width, small_height, {{cell / 4, 30}, {cell / 16, 10}}, seed + 100 * (c + 1));
    VipsImg gx = Linear(x, gradient_x[c] / small_width, offset[c]);
    VipsImg gy = Linear(y, gradient_y[c] / small_height, 0);
    channels.push_back(Add(Add(coarse_luma, colour), Add(gx, gy)));
  }
  VipsImage* bands[] = {channels[0].get(), channels[1].get(), channels[2].get()};
  VipsImg smooth =
      RunVips("bandjoin", [&](VipsImage** out) { return vips_bandjoin(bands, out, 3, nullptr); });
  VipsImg rgb = Add(Upscale(smooth, factor, width, height), grain);  // grain added to every band
  // Casting clips to 0..255.
  return Memory(Tag(Cast(rgb, VIPS_FORMAT_UCHAR), VIPS_INTERPRETATION_sRGB));
}

std::string Jpeg(const VipsImg& image, VipsForeignSubsample subsample) {
  // Q 90 like a camera. libvips' "auto" mode turns subsampling off at Q >= 90, so it is explicit.
  return Encode("jpegsave_buffer", [&](void** buffer, size_t* length) {
    return vips_jpegsave_buffer(image.get(), buffer, length, "Q", 90, "subsample_mode", subsample,
                                "strip", TRUE, nullptr);
  });
}

std::string Png(const VipsImg& image) {
  return Encode("pngsave_buffer", [&](void** buffer, size_t* length) {
    return vips_pngsave_buffer(image.get(), buffer, length, nullptr);
  });
}

}  // namespace

SizeClass MakeSizeClass(const std::string& label, const std::string& key, int width, int height,
                        int count, bool with_444, int threads) {
  testing::EnsureVips();
  SizeClass size{label, key, width, height, {}, {}};
  size.images.resize(static_cast<size_t>(count));
  if (with_444) size.jpeg444.resize(static_cast<size_t>(count));
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < count; i = next++) {
        const VipsImg photo = Photo(width, height, i);
        CorpusImage& image = size.images[static_cast<size_t>(i)];
        if (i % 8 == 7) {
          image = {key + "-" + std::to_string(i) + ".png", "image/png", Png(photo)};
        } else {
          image = {key + "-" + std::to_string(i) + ".jpg", "image/jpeg",
                   Jpeg(photo, VIPS_FOREIGN_SUBSAMPLE_ON)};
        }
        if (with_444) {
          size.jpeg444[static_cast<size_t>(i)] = {key + "-" + std::to_string(i) + "-444.jpg",
                                                  "image/jpeg",
                                                  Jpeg(photo, VIPS_FOREIGN_SUBSAMPLE_OFF)};
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  return size;
}

}  // namespace imgproc::bench
