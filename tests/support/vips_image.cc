#include "vips_image.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace imgproc::testing {

void EnsureVips() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("imgproc-tests") != 0) VipsFailed("vips_init");
  });
}

void VipsFailed(const char* what) {
  std::fprintf(stderr, "libvips: %s failed: %s\n", what, vips_error_buffer());
  std::abort();
}

VipsImg Add(const VipsImg& a, const VipsImg& b) {
  return RunVips("add", [&](VipsImage** out) { return vips_add(a.get(), b.get(), out, nullptr); });
}

VipsImg Band(const VipsImg& in, int band) {
  return RunVips("extract_band",
                 [&](VipsImage** out) { return vips_extract_band(in.get(), out, band, nullptr); });
}

VipsImg Linear(const VipsImg& in, double a, double b) {
  return RunVips("linear",
                 [&](VipsImage** out) { return vips_linear1(in.get(), out, a, b, nullptr); });
}

VipsImg Cast(const VipsImg& in, VipsBandFormat format) {
  return RunVips("cast",
                 [&](VipsImage** out) { return vips_cast(in.get(), out, format, nullptr); });
}

VipsImg Tag(const VipsImg& in, VipsInterpretation interpretation) {
  return RunVips("copy", [&](VipsImage** out) {
    return vips_copy(in.get(), out, "interpretation", interpretation, nullptr);
  });
}

VipsImg Memory(const VipsImg& in) {
  VipsImage* out = vips_image_copy_memory(in.get());
  if (out == nullptr) VipsFailed("copy_memory");
  return VipsImg(out);
}

}  // namespace imgproc::testing
