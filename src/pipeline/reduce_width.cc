#include "pipeline/reduce_width.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Each step below follows libvips 8.14.1's resample/reduceh.cpp (vips_reduceh_build and
// vips_reduceh_gen) and resample/templates.h (calculate_coefficients_lanczos, reduce_sum,
// unsigned_fixed_round), in the same order and with the same conversions, so the pixels are the
// same: tests/pipeline/reduce_width_test.cc compares them with vips_reduceh's byte for byte.

namespace imgproc::pipeline {
namespace {

#if defined(__x86_64__)  // everything in here serves ReduceWidth, which needs SSSE3

// Sub-pixel phases of the coefficient table: 1/64 pixel apart, both ends included.
constexpr int kPhases = VIPS_TRANSFORM_SCALE + 1;

// libvips refuses masks longer than this ("reduce factor too large").
constexpr int kMaxPoints = 2000;

// vips_resize's gap: a reduce of 4 or more is first shrunk by an integer factor (box filter),
// leaving the kernel less than 2 * 2.
constexpr double kGap = 2.0;

// The kernel and where it reads, shared by every region of one output image.
struct Reduction {
  int points = 0;  // taps per output pixel: always odd (2 * rint(3 * hshrink) + 1)
  double hshrink = 0;
  double hoffset = 0;  // input pixels dropped on the left, when rounding the width down
  // Per phase, per pair of taps: the two taps' fixed-point coefficients as the low and high 16
  // bits of one word, the operand pmaddwd multiplies a pair of pixels with.
  int32_t* coefficients = nullptr;  // kPhases * Pairs(points)
};

// Pairs of taps of a mask of `points` taps: the last pair's second tap is a zero.
int Pairs(int points) { return (points + 1) / 2; }

// calculate_coefficients_lanczos(c, 3, shrink, x): the normalised Lanczos 3 mask at sub-pixel
// offset x, `points` taps.
void LanczosMask(double* c, int points, double shrink, double x) {
  constexpr int a = 3;
  const double half = x + points / 2.0 - 1;
  double sum = 0;
  for (int i = 0; i < points; i++) {
    const double xp = (i - half) / shrink;
    double l;
    if (xp == 0.0) {
      l = 1.0;
    } else if (xp < -a || xp > a) {
      l = 0.0;
    } else {
      l = static_cast<double>(a) * std::sin(VIPS_PI * xp) *
          std::sin(VIPS_PI * xp / static_cast<double>(a)) / (VIPS_PI * VIPS_PI * xp * xp);
    }
    c[i] = l;
    sum += l;
  }
  for (int i = 0; i < points; i++) c[i] /= sum;
}

template <typename T>
T Read(const VipsPel* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

// The `kBytes` bytes at `p` in the low bytes of a vector, read without touching the bytes after
// them (the last pixel of a region may end its buffer) and in whole loads: a 6-byte memcpy went
// through the stack, and the 8-byte load after two smaller stores stalled (41% of the loop).
template <int kBytes>
__attribute__((target("ssse3"))) __m128i Load(const VipsPel* p) {
  static_assert(kBytes >= 1 && kBytes <= 8);
  if constexpr (kBytes == 8) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (kBytes >= 4) {
    __m128i v = _mm_cvtsi32_si128(static_cast<int32_t>(Read<uint32_t>(p)));
    if constexpr (kBytes == 6) v = _mm_insert_epi16(v, Read<uint16_t>(p + 4), 2);
    static_assert(kBytes == 4 || kBytes == 6);
    return v;
  } else if constexpr (kBytes >= 2) {
    __m128i v = _mm_cvtsi32_si128(Read<uint16_t>(p));
    if constexpr (kBytes == 3) v = _mm_insert_epi16(v, p[2], 1);
    return v;
  } else {
    return _mm_cvtsi32_si128(p[0]);
  }
}

// Output pixel after output pixel, as vips_reduceh_gen, each one in vector registers: the bytes of
// taps k and k + 1 (all bands) are spread by pshufb into 16-bit lanes, band by band
// (b0[k], b0[k+1], b1[k], b1[k+1], ...), and pmaddwd multiplies them with the pair's coefficients
// and adds each band's two products: one 32-bit sum per band, exactly reduce_sum's.
template <int kBands>
__attribute__((target("ssse3"))) int Generate(VipsRegion* out_region, void* seq, void* /*a*/,
                                              void* b, gboolean* /*stop*/) {
  auto* ir = static_cast<VipsRegion*>(seq);
  const auto* reduction = static_cast<const Reduction*>(b);
  const VipsRect* r = &out_region->valid;
  const int pairs = Pairs(reduction->points);
  const int whole_pairs = pairs - 1;  // then the last tap alone

  VipsRect s;
  s.left = static_cast<int>(r->left * reduction->hshrink - reduction->hoffset);
  s.top = r->top;
  s.width = static_cast<int>(r->width * reduction->hshrink + reduction->points);
  s.height = r->height;
  if (vips_region_prepare(ir, &s) != 0) return -1;

  // pshufb's control: 16-bit lane 2 * band takes byte `band` (tap k), lane 2 * band + 1 byte
  // `band + kBands` (tap k + 1); the high bytes are zero.
  alignas(16) int8_t spread[16];
  std::memset(spread, -1, sizeof spread);  // -1: a zero byte
  for (int band = 0; band < kBands; ++band) {
    spread[4 * band] = static_cast<int8_t>(band);
    spread[4 * band + 2] = static_cast<int8_t>(band + kBands);
  }
  const __m128i shuffle = _mm_load_si128(reinterpret_cast<const __m128i*>(spread));
  const __m128i round = _mm_set1_epi32(VIPS_INTERPOLATE_SCALE >> 1);

  for (int y = 0; y < r->height; y++) {
    VipsPel* q = VIPS_REGION_ADDR(out_region, r->left, r->top + y);
    double x_in = (r->left + 0.5) * reduction->hshrink - 0.5 - reduction->hoffset;
    // The start (x == 0) of the input line, which may lie outside the region.
    const VipsPel* p0 = VIPS_REGION_ADDR(ir, ir->valid.left, r->top + y) - ir->valid.left * kBands;
    for (int x = 0; x < r->width; x++) {
      const int ix = static_cast<int>(x_in);
      const VipsPel* p = p0 + ix * kBands;
      const int sx = static_cast<int>(x_in * VIPS_TRANSFORM_SCALE * 2);
      const int six = sx & (VIPS_TRANSFORM_SCALE * 2 - 1);
      const int tx = (six + 1) >> 1;
      const int32_t* c = reduction->coefficients + tx * pairs;
      __m128i sum = round;
      for (int pair = 0; pair < whole_pairs; ++pair, p += 2 * kBands) {
        const __m128i pixels = _mm_shuffle_epi8(Load<2 * kBands>(p), shuffle);
        sum = _mm_add_epi32(sum, _mm_madd_epi16(pixels, _mm_set1_epi32(c[pair])));
      }
      // The last tap alone (its pair's second coefficient is 0): the pixel after it may lie
      // beyond the region.
      const __m128i last = _mm_shuffle_epi8(Load<kBands>(p), shuffle);
      sum = _mm_add_epi32(sum, _mm_madd_epi16(last, _mm_set1_epi32(c[whole_pairs])));
      // unsigned_fixed_round, then VIPS_CLIP(0, sum, 255): packs keeps the values (|sum| is far
      // below 32768 after the shift), packus clips.
      sum = _mm_srai_epi32(sum, VIPS_INTERPOLATE_SHIFT);
      const __m128i bytes_out = _mm_packus_epi16(_mm_packs_epi32(sum, sum), sum);
      const auto word = static_cast<uint32_t>(_mm_cvtsi128_si32(bytes_out));
      std::memcpy(q, &word, kBands);
      x_in += reduction->hshrink;
      q += kBands;
    }
  }
  return 0;
}

using GenerateFn = int (*)(VipsRegion*, void*, void*, void*, gboolean*);
constexpr GenerateFn kGenerate[] = {Generate<1>, Generate<2>, Generate<3>, Generate<4>};

#endif  // __x86_64__

}  // namespace

bool ReducesWidth(const VipsImage* in) {
#if defined(__x86_64__)
  static const bool ssse3 = __builtin_cpu_supports("ssse3") != 0;
  return ssse3 && in->BandFmt == VIPS_FORMAT_UCHAR && in->Coding == VIPS_CODING_NONE &&
         in->Bands >= 1 && in->Bands <= 4;
#else
  (void)in;
  return false;
#endif
}

int ReduceWidth(VipsImage* in, VipsImage** out, double hshrink) {
#if defined(__x86_64__)
  if (!ReducesWidth(in)) {
    vips_error("ReduceWidth", "%s", "not an 8-bit image of 1 to 4 bands, or no SSSE3");
    return -1;
  }
  if (hshrink < 1.0) {
    vips_error("ReduceWidth", "%s", "reduce factor should be >= 1.0");
    return -1;
  }
  // Round to nearest as VIPS_ROUND_UINT does, not as lround: the same width as libvips'.
  // NOLINTNEXTLINE(bugprone-incorrect-roundings)
  const int width = static_cast<int>(static_cast<double>(in->Xsize) / hshrink + 0.5);
  if (width <= 0) {
    vips_error("ReduceWidth", "%s", "image has shrunk to nothing");
    return -1;
  }
  // Pixels invented in the input, negative for discarded ones.
  double extra_pixels = width * hshrink - in->Xsize;

  VipsImage* source = in;
  g_object_ref(source);
  const int int_hshrink =
      static_cast<int>(std::max(1.0, std::floor(static_cast<double>(in->Xsize) / width / kGap)));
  if (int_hshrink > 1) {
    VipsImage* shrunk = nullptr;
    const int failed = vips_shrinkh(source, &shrunk, int_hshrink, "ceil", TRUE, nullptr);
    g_object_unref(source);
    if (failed != 0) return -1;
    source = shrunk;
    hshrink /= int_hshrink;
    extra_pixels /= int_hshrink;
  }
  if (hshrink == 1.0) {
    const int failed = vips_copy(source, out, nullptr);
    g_object_unref(source);
    return failed;
  }
  const int points = 2 * static_cast<int>(std::rint(3 * hshrink)) + 1;
  if (points > kMaxPoints) {
    g_object_unref(source);
    vips_error("ReduceWidth", "%s", "reduce factor too large");
    return -1;
  }

  // The edge pixels copied outwards, so every tap reads a pixel.
  VipsImage* embedded = nullptr;
  const int failed =
      vips_embed(source, &embedded, static_cast<int>(std::ceil(points / 2.0)) - 1, 0,
                 source->Xsize + points, source->Ysize, "extend", VIPS_EXTEND_COPY, nullptr);
  g_object_unref(source);
  if (failed != 0) return -1;

  VipsImage* image = vips_image_new();
  vips_object_local(image, embedded);  // the input lives as long as the output
  const int pairs = Pairs(points);
  // Freed with the output image.
  void* memory = vips_malloc(VIPS_OBJECT(image), sizeof(Reduction));
  auto* coefficients = static_cast<int32_t*>(
      vips_malloc(VIPS_OBJECT(image), sizeof(int32_t) * kPhases * static_cast<size_t>(pairs)));
  if (memory == nullptr || coefficients == nullptr) {
    g_object_unref(image);
    return -1;
  }
  auto* reduction = new (memory) Reduction;  // trivially destructible: freed as bytes
  reduction->coefficients = coefficients;
  reduction->points = points;
  reduction->hshrink = hshrink;
  // Rounding down drops input pixels: the origin moves inside by half of them, so as many are
  // dropped on the left as on the right.
  reduction->hoffset = (1 + extra_pixels) / 2.0 - 1;
  double mask[kMaxPoints + 1];
  for (int phase = 0; phase < kPhases; phase++) {
    LanczosMask(mask, points, hshrink, static_cast<float>(phase) / VIPS_TRANSFORM_SCALE);
    mask[points] = 0;
    for (int pair = 0; pair < pairs; pair++) {
      const int low = static_cast<int>(mask[2 * pair] * VIPS_INTERPOLATE_SCALE);  // truncated
      const int high = static_cast<int>(mask[2 * pair + 1] * VIPS_INTERPOLATE_SCALE);
      // Normalised Lanczos taps are below 2 in magnitude: far inside 16 bits at 4096 a unit.
      if (std::max(std::abs(low), std::abs(high)) > std::numeric_limits<int16_t>::max()) {
        g_object_unref(image);
        vips_error("ReduceWidth", "%s", "coefficient out of range");
        return -1;
      }
      reduction->coefficients[phase * pairs + pair] = static_cast<int32_t>(
          (static_cast<uint32_t>(static_cast<uint16_t>(high)) << 16) | static_cast<uint16_t>(low));
    }
  }

  if (vips_image_pipelinev(image, VIPS_DEMAND_STYLE_THINSTRIP, embedded, nullptr) != 0) {
    g_object_unref(image);
    return -1;
  }
  image->Xsize = width;
  if (vips_image_generate(image, vips_start_one, kGenerate[embedded->Bands - 1], vips_stop_one,
                          embedded, reduction) != 0) {
    g_object_unref(image);
    return -1;
  }
  vips_reorder_margin_hint(image, points);
  *out = image;
  return 0;
#else
  (void)in;
  (void)out;
  (void)hshrink;
  vips_error("ReduceWidth", "%s", "not built for this CPU");
  return -1;
#endif
}

int ResizeDown(VipsImage* in, VipsImage** out, double hscale, double vscale) {
  if (hscale >= 1.0 || !ReducesWidth(in)) {
    return vips_resize(in, out, hscale, "vscale", vscale, nullptr);
  }
  VipsImage* tall = nullptr;  // the height reduced, the width not yet
  if (vips_resize(in, &tall, 1.0, "vscale", vscale, nullptr) != 0) return -1;
  // vips_resize keeps a scale from making a side less than 1 pixel.
  const int failed =
      ReduceWidth(tall, out, 1.0 / std::max(hscale, 1.0 / static_cast<double>(tall->Xsize)));
  g_object_unref(tall);
  return failed;
}

}  // namespace imgproc::pipeline
