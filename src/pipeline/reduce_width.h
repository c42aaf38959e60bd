// The horizontal half of a Lanczos 3 resize of an 8-bit image, with SIMD.
//
// libvips 8.14 (Debian 12's) reduces an image's width one sample at a time: its vips_reduceh has
// no vector path (its vips_reducev has one, and libvips 8.15 gave both a Highway one). In a 2 MP
// JPEG fitted inside 800 px, shrunk by 2 while decoding and then from 866 to 800 px wide, that loop
// was a third of the CPU (perf; decoding was another third). ReduceWidth is the same operation, to
// the byte: the same Lanczos 3 coefficients, sub-pixel phases, edge pixels and rounding, with the
// multiply-adds of two taps and all bands of a pixel in one SSSE3 pmaddwd.
#ifndef IMGPROC_PIPELINE_REDUCE_WIDTH_H_
#define IMGPROC_PIPELINE_REDUCE_WIDTH_H_

#include <vips/vips.h>

namespace imgproc::pipeline {

// Whether ReduceWidth takes `in`: 8-bit unsigned, uncoded, 1 to 4 bands, on a CPU with SSSE3.
[[nodiscard]] bool ReducesWidth(const VipsImage* in);

// vips_reduceh(in, out, hshrink, "gap", 2.0, NULL) with its default kernel (Lanczos 3), as
// vips_resize calls it: the same pixels out. For an `in` that ReducesWidth takes. Returns 0 or,
// with libvips' error buffer set, -1.
[[nodiscard]] int ReduceWidth(VipsImage* in, VipsImage** out, double hshrink);

// vips_resize(in, out, hscale, "vscale", vscale, NULL) for a reduce (both scales at most 1), with
// its horizontal step in ReduceWidth when that takes `in`: vips_resize reduces the height first
// (vips_reducev, which has a vector path), then the width. The same pixels as vips_resize.
[[nodiscard]] int ResizeDown(VipsImage* in, VipsImage** out, double hscale, double vscale);

}  // namespace imgproc::pipeline

#endif  // IMGPROC_PIPELINE_REDUCE_WIDTH_H_
