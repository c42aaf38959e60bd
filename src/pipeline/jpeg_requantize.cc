#include "pipeline/jpeg_requantize.h"

#include <jpeglib.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <csetjmp>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstdlib>
#include <memory>

// Exported by libjpeg (IJG and libjpeg-turbo alike) but declared only in its internal jchuff.h:
// the optimal Huffman table for symbol counts, which optimize_coding builds after its counting
// pass. Called here with counts gathered while rescaling, to skip that pass.
extern "C" void jpeg_gen_optimal_table(j_compress_ptr cinfo, JHUFF_TBL* htbl, long freq[]);

namespace imgproc::pipeline {
namespace {

// libjpeg reports errors by calling error_exit, which must not return: it jumps back to Run().
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};

[[noreturn]] void OnError(j_common_ptr cinfo) {
  std::longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1);
}

// Warnings (level -1) mean damaged data that libjpeg would paper over; the pixel path decides
// what to do with such files, so the fast path gives up on them. Trace messages are ignored.
void OnMessage(j_common_ptr cinfo, int level) {
  if (level < 0) OnError(cinfo);
}

bool IsYcbcr420(const jpeg_decompress_struct& src) {
  if (src.data_precision != 8 || src.num_components != 3 || src.jpeg_color_space != JCS_YCbCr) {
    return false;
  }
  const jpeg_component_info* c = src.comp_info;
  return c[0].h_samp_factor == 2 && c[0].v_samp_factor == 2 && c[1].h_samp_factor == 1 &&
         c[1].v_samp_factor == 1 && c[2].h_samp_factor == 1 && c[2].v_samp_factor == 1;
}

// Position k of the zigzag order holds coefficient kZigzag[k] of a block in natural order.
constexpr int kZigzag[DCTSIZE2] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                   12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                   35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                   58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

// The inverse: the zigzag position of each coefficient in natural order.
constexpr auto kZigzagPosition = [] {
  std::array<uint8_t, DCTSIZE2> position{};
  for (int k = 0; k < DCTSIZE2; ++k) position[kZigzag[k]] = static_cast<uint8_t>(k);
  return position;
}();

// The largest magnitudes the Huffman coder of an 8-bit JPEG accepts, in bits.
constexpr int kMaxDcDiffBits = 11;
constexpr int kMaxAcBits = 10;

// How often each Huffman symbol occurs in the scan, per table, in the layout that
// jpeg_gen_optimal_table() takes (257 entries, the last one its own).
struct SymbolCounts {
  long dc[NUM_HUFF_TBLS][257] = {};
  long ac[NUM_HUFF_TBLS][257] = {};
};

int Bits(int value) {
  return static_cast<int>(std::bit_width(static_cast<unsigned>(value < 0 ? -value : value)));
}

// Counts the symbols libjpeg's sequential Huffman coder writes for `block` (as jchuff.c's
// htest_one_block does): the size of the DC difference, then, in zigzag order, each run of zeros
// with the size of the coefficient ending it (a ZRL per 16 zeros of a longer run), and an EOB
// unless the last coefficient is non-zero. `nonzero` has bit n set when coefficient n (natural
// order) is not zero. False for a value the coder would refuse.
bool CountBlock(const JCOEF* block, uint64_t nonzero, int last_dc, long* dc, long* ac) {
  const int dc_bits = Bits(block[0] - last_dc);
  if (dc_bits > kMaxDcDiffBits) return false;
  ++dc[dc_bits];
  uint64_t zigzag = 0;  // the AC coefficients' bits, by zigzag position; few at quality 50
  for (uint64_t n = nonzero & ~uint64_t{1}; n != 0; n &= n - 1) {
    zigzag |= uint64_t{1} << kZigzagPosition[std::countr_zero(n)];
  }
  int previous = 0;
  for (; zigzag != 0; zigzag &= zigzag - 1) {
    const int k = std::countr_zero(zigzag);
    int run = k - previous - 1;
    for (; run > 15; run -= 16) ++ac[0xF0];
    const int bits = Bits(block[kZigzag[k]]);
    if (bits > kMaxAcBits) return false;
    ++ac[(run << 4) + bits];
    previous = k;
  }
  if (previous != DCTSIZE2 - 1) ++ac[0];
  return true;
}

// Each coefficient's factor from the quantiser it was stored with to the one it will be written
// with: a multiplication per coefficient, not a division.
struct Rescaling {
  alignas(16) float ratio[DCTSIZE2];
};

Rescaling RescalingBetween(const JQUANT_TBL& from, const JQUANT_TBL& to) {
  Rescaling r;
  for (int k = 0; k < DCTSIZE2; ++k) {
    r.ratio[k] = static_cast<float>(from.quantval[k]) / static_cast<float>(to.quantval[k]);
  }
  return r;
}

// Rescales a block, rounding half away from zero, and returns which coefficients are not zero
// (bit n for coefficient n). Values beyond 16 bits (from a source coarser than the target)
// saturate; CountBlock and libjpeg refuse them.
uint64_t RescaleBlock(JCOEF* coef, const Rescaling& r) {
  uint64_t zero = 0;
#if defined(__SSE2__)
  // 16 coefficients at a time; this runs over every coefficient of the image.
  const __m128 half = _mm_set1_ps(0.5f);
  const __m128 sign = _mm_set1_ps(-0.0f);
  const auto scale = [&](__m128i four, int at) {  // four int32 coefficients from position `at`
    __m128 f = _mm_mul_ps(_mm_cvtepi32_ps(four), _mm_load_ps(r.ratio + at));
    f = _mm_add_ps(f, _mm_or_ps(half, _mm_and_ps(f, sign)));
    return _mm_cvttps_epi32(f);
  };
  for (int at = 0; at < DCTSIZE2; at += 16) {
    auto* p = reinterpret_cast<__m128i*>(coef + at);
    const __m128i a = _mm_loadu_si128(p);
    const __m128i b = _mm_loadu_si128(p + 1);
    // Sign-extended to 32 bits: each 16-bit value into the top half, shifted down.
    const __m128i ra = _mm_packs_epi32(scale(_mm_srai_epi32(_mm_unpacklo_epi16(a, a), 16), at),
                                       scale(_mm_srai_epi32(_mm_unpackhi_epi16(a, a), 16), at + 4));
    const __m128i rb =
        _mm_packs_epi32(scale(_mm_srai_epi32(_mm_unpacklo_epi16(b, b), 16), at + 8),
                        scale(_mm_srai_epi32(_mm_unpackhi_epi16(b, b), 16), at + 12));
    _mm_storeu_si128(p, ra);
    _mm_storeu_si128(p + 1, rb);
    const __m128i zeros = _mm_packs_epi16(_mm_cmpeq_epi16(ra, _mm_setzero_si128()),
                                          _mm_cmpeq_epi16(rb, _mm_setzero_si128()));
    zero |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(zeros))) << at;
  }
#else
  for (int k = 0; k < DCTSIZE2; ++k) {
    const float scaled = static_cast<float>(coef[k]) * r.ratio[k];
    coef[k] =
        static_cast<JCOEF>(std::clamp(scaled + (scaled >= 0 ? 0.5f : -0.5f), -32768.0f, 32767.0f));
    zero |= static_cast<uint64_t>(coef[k] == 0) << k;
  }
#endif
  return ~zero;
}

// Rescales every block the output will contain and, unless `counts` is null, counts its Huffman
// symbols, block by block in the order of the one interleaved scan jpeg_write_coefficients()
// writes (jctrans.c): MCU by MCU, and within an MCU each component's blocks in raster order. The
// DC difference runs along that order per component. An MCU on the right or bottom edge may reach
// past a component's blocks: libjpeg writes a dummy there (the previous block's DC, no AC), whose
// symbols are a zero difference and an EOB. False when a block cannot be coded.
bool RescaleAndCount(jpeg_decompress_struct& src, jvirt_barray_ptr* arrays,
                     const Rescaling rescaling[3], const int table[3], SymbolCounts* counts) {
  auto* const common = reinterpret_cast<j_common_ptr>(&src);
  const auto mcu_width = static_cast<JDIMENSION>(src.max_h_samp_factor * DCTSIZE);
  const auto mcu_height = static_cast<JDIMENSION>(src.max_v_samp_factor * DCTSIZE);
  const JDIMENSION mcus_per_row = (src.image_width + mcu_width - 1) / mcu_width;
  const JDIMENSION mcu_rows = (src.image_height + mcu_height - 1) / mcu_height;
  int last_dc[3] = {0, 0, 0};
  for (JDIMENSION mcu_row = 0; mcu_row < mcu_rows; ++mcu_row) {
    JBLOCKARRAY rows[3];
    for (int ci = 0; ci < 3; ++ci) {
      // The arrays are allocated in whole MCUs, so an edge MCU's rows exist.
      const auto v = static_cast<JDIMENSION>(src.comp_info[ci].v_samp_factor);
      rows[ci] = src.mem->access_virt_barray(common, arrays[ci], mcu_row * v, v, TRUE);
    }
    for (JDIMENSION mcu_col = 0; mcu_col < mcus_per_row; ++mcu_col) {
      for (int ci = 0; ci < 3; ++ci) {
        const jpeg_component_info& c = src.comp_info[ci];
        for (int y = 0; y < c.v_samp_factor; ++y) {
          const JDIMENSION row = mcu_row * static_cast<JDIMENSION>(c.v_samp_factor) + y;
          for (int x = 0; x < c.h_samp_factor; ++x) {
            const JDIMENSION col = mcu_col * static_cast<JDIMENSION>(c.h_samp_factor) + x;
            const bool dummy = row >= c.height_in_blocks || col >= c.width_in_blocks;
            if (dummy) {
              if (counts == nullptr) continue;
              ++counts->dc[table[ci]][0];
              ++counts->ac[table[ci]][0];
              continue;
            }
            JCOEF* block = rows[ci][y][col];
            const uint64_t nonzero = RescaleBlock(block, rescaling[ci]);
            if (counts == nullptr) continue;
            if (!CountBlock(block, nonzero, last_dc[ci], counts->dc[table[ci]],
                            counts->ac[table[ci]])) {
              return false;
            }
            last_dc[ci] = block[0];
          }
        }
      }
    }
  }
  return true;
}

// Where the output goes: one malloc'd buffer that grows by doubling. It lives in the caller's
// frame, which a longjmp inside Run() does not unwind, and the caller frees it.
struct Destination {
  jpeg_destination_mgr pub;
  unsigned char* data = nullptr;
  size_t capacity = 0;
  size_t size = 0;  // set when the image is complete
};

void StartOutput(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<Destination*>(cinfo->dest);
  d->data = static_cast<unsigned char*>(std::malloc(d->capacity));
  if (d->data == nullptr) OnError(reinterpret_cast<j_common_ptr>(cinfo));
  d->pub.next_output_byte = d->data;
  d->pub.free_in_buffer = d->capacity;
}

boolean GrowOutput(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<Destination*>(cinfo->dest);
  // libjpeg calls this when the buffer is full, whatever free_in_buffer says.
  auto* grown = static_cast<unsigned char*>(std::realloc(d->data, 2 * d->capacity));
  if (grown == nullptr) OnError(reinterpret_cast<j_common_ptr>(cinfo));
  d->data = grown;
  d->pub.next_output_byte = grown + d->capacity;
  d->pub.free_in_buffer = d->capacity;
  d->capacity *= 2;
  return TRUE;
}

void FinishOutput(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<Destination*>(cinfo->dest);
  d->size = d->capacity - d->pub.free_in_buffer;
}

// The libjpeg part, C-style: nothing with a destructor may live across setjmp/longjmp.
// `counts` is null for libjpeg's own two passes.
bool Run(const unsigned char* in, unsigned long in_size, int quality, SymbolCounts* counts,
         Destination* out) {
  jpeg_decompress_struct src;
  jpeg_compress_struct dst;
  ErrorManager errors;
  src.err = jpeg_std_error(&errors.pub);
  dst.err = &errors.pub;
  errors.pub.error_exit = OnError;
  errors.pub.emit_message = OnMessage;
  // Set before setjmp and not changed after, so their values are defined after a longjmp.
  jpeg_create_decompress(&src);
  jpeg_create_compress(&dst);
  out->pub.init_destination = StartOutput;
  out->pub.empty_output_buffer = GrowOutput;
  out->pub.term_destination = FinishOutput;
  volatile bool ok = false;
  if (setjmp(errors.jump) == 0) {
    jpeg_mem_src(&src, in, in_size);
    if (jpeg_read_header(&src, TRUE) == JPEG_HEADER_OK && IsYcbcr420(src)) {
      jvirt_barray_ptr* coefficients = jpeg_read_coefficients(&src);
      jpeg_copy_critical_parameters(&src, &dst);
      jpeg_set_quality(&dst, quality, TRUE);  // standard tables 0 (luma) and 1 (chroma)
      Rescaling rescaling[3];
      int table[3];
      for (int ci = 0; ci < 3; ++ci) {
        dst.comp_info[ci].quant_tbl_no = ci == 0 ? 0 : 1;
        // The source's tables as they were when each component was read (latched per scan).
        const JQUANT_TBL* from = src.comp_info[ci].quant_table;
        const JQUANT_TBL* to = dst.quant_tbl_ptrs[dst.comp_info[ci].quant_tbl_no];
        if (from == nullptr || to == nullptr) OnError(reinterpret_cast<j_common_ptr>(&src));
        rescaling[ci] = RescalingBetween(*from, *to);
        // jpeg_set_colorspace() gave luma the tables 0 and chroma 1, DC and AC alike.
        table[ci] = dst.comp_info[ci].dc_tbl_no;
        if (dst.comp_info[ci].ac_tbl_no != table[ci]) OnError(reinterpret_cast<j_common_ptr>(&src));
      }
      if (RescaleAndCount(src, coefficients, rescaling, table, counts)) {
        if (counts != nullptr) {
          // The optimal tables for these counts, as libjpeg's own optimize_coding builds them
          // after its counting pass; then one coding pass instead of two.
          for (int t : {table[0], table[1]}) {
            jpeg_gen_optimal_table(&dst, dst.dc_huff_tbl_ptrs[t], counts->dc[t]);
            jpeg_gen_optimal_table(&dst, dst.ac_huff_tbl_ptrs[t], counts->ac[t]);
          }
        }
        dst.optimize_coding = counts == nullptr ? TRUE : FALSE;
        dst.dest = &out->pub;
        jpeg_write_coefficients(&dst, coefficients);
        jpeg_finish_compress(&dst);
        jpeg_finish_decompress(&src);
        ok = true;
      }
    }
  }
  jpeg_destroy_compress(&dst);
  jpeg_destroy_decompress(&src);
  return ok;
}

}  // namespace

std::optional<std::string> RequantizeJpeg(std::string_view jpeg, int quality,
                                          HuffmanTables tables) {
  Destination out;
  // Quality 50 output is usually a fraction of the input; the buffer doubles when it is not.
  out.capacity = std::max<size_t>(jpeg.size() / 2, 64 * 1024);
  // 16 KiB, so not on the stack.
  std::unique_ptr<SymbolCounts> counts;
  if (tables == HuffmanTables::kCountedWhileRescaling) counts = std::make_unique<SymbolCounts>();
  const bool ok = Run(reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size(), quality,
                      counts.get(), &out);
  const std::unique_ptr<unsigned char, decltype(&std::free)> owned(out.data, &std::free);
  if (!ok) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(out.data), out.size);
}

}  // namespace imgproc::pipeline
