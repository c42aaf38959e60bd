#include "pipeline/jpeg_requantize.h"

#include <jpeglib.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstdlib>
#include <memory>

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

// Rescales every coefficient of `component` from the quantiser it was stored with to the one it
// will be written with, rounding half away from zero. A multiplication by a precomputed ratio,
// not a division per coefficient: this loop runs over every coefficient of the image.
void Rescale(jpeg_decompress_struct& src, jvirt_barray_ptr array, const JQUANT_TBL& from,
             const JQUANT_TBL& to, const jpeg_component_info& component) {
  float ratio[DCTSIZE2];
  for (int k = 0; k < DCTSIZE2; ++k) {
    ratio[k] = static_cast<float>(from.quantval[k]) / static_cast<float>(to.quantval[k]);
  }
  const auto common = reinterpret_cast<j_common_ptr>(&src);
  for (JDIMENSION row = 0; row < component.height_in_blocks; ++row) {
    JBLOCKARRAY blocks = src.mem->access_virt_barray(common, array, row, 1, TRUE);
    for (JDIMENSION b = 0; b < component.width_in_blocks; ++b) {
      JCOEF* coef = blocks[0][b];
      for (int k = 0; k < DCTSIZE2; ++k) {
        const float scaled = static_cast<float>(coef[k]) * ratio[k];
        coef[k] = static_cast<JCOEF>(scaled + (scaled >= 0 ? 0.5f : -0.5f));
      }
    }
  }
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
bool Run(const unsigned char* in, unsigned long in_size, int quality, Destination* out) {
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
      dst.optimize_coding = TRUE;
      for (int ci = 0; ci < 3; ++ci) {
        dst.comp_info[ci].quant_tbl_no = ci == 0 ? 0 : 1;
        // The source's tables as they were when each component was read (latched per scan).
        const JQUANT_TBL* from = src.comp_info[ci].quant_table;
        const JQUANT_TBL* to = dst.quant_tbl_ptrs[dst.comp_info[ci].quant_tbl_no];
        if (from == nullptr || to == nullptr) OnError(reinterpret_cast<j_common_ptr>(&src));
        Rescale(src, coefficients[ci], *from, *to, src.comp_info[ci]);
      }
      dst.dest = &out->pub;
      jpeg_write_coefficients(&dst, coefficients);
      jpeg_finish_compress(&dst);
      jpeg_finish_decompress(&src);
      ok = true;
    }
  }
  jpeg_destroy_compress(&dst);
  jpeg_destroy_decompress(&src);
  return ok;
}

}  // namespace

std::optional<std::string> RequantizeJpeg(std::string_view jpeg, int quality) {
  Destination out;
  // Quality 50 output is usually a fraction of the input; the buffer doubles when it is not.
  out.capacity = std::max<size_t>(jpeg.size() / 2, 64 * 1024);
  const bool ok =
      Run(reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size(), quality, &out);
  const std::unique_ptr<unsigned char, decltype(&std::free)> owned(out.data, &std::free);
  if (!ok) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(out.data), out.size);
}

}  // namespace imgproc::pipeline
