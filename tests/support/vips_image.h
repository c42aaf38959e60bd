// libvips building blocks for the images that tests and benchmarks generate: an owning handle
// and operations that abort the process on failure (a generated input must never fail quietly).
#ifndef IMGPROC_TESTS_SUPPORT_VIPS_IMAGE_H_
#define IMGPROC_TESTS_SUPPORT_VIPS_IMAGE_H_

#include <vips/vips.h>

#include <memory>
#include <string>
#include <utility>

namespace imgproc::testing {

// Starts libvips once; usable before (or without) the codec's InitCodec().
void EnsureVips();

// Prints `what` with libvips' error buffer and aborts.
[[noreturn]] void VipsFailed(const char* what);

// Owns one reference to a VipsImage.
class VipsImg {
 public:
  explicit VipsImg(VipsImage* image) : image_(image) {}
  ~VipsImg() {
    if (image_ != nullptr) g_object_unref(image_);
  }
  VipsImg(const VipsImg&) = delete;
  VipsImg& operator=(const VipsImg&) = delete;
  VipsImg(VipsImg&& other) noexcept : image_(std::exchange(other.image_, nullptr)) {}
  VipsImg& operator=(VipsImg&& other) noexcept {
    std::swap(image_, other.image_);
    return *this;
  }

  VipsImage* get() const { return image_; }

 private:
  VipsImage* image_;
};

// Runs a libvips operation `op(&out)` that creates a new image.
template <typename Op>
VipsImg RunVips(const char* what, Op op) {
  VipsImage* out = nullptr;
  if (op(&out) != 0) VipsFailed(what);
  return VipsImg(out);
}

// Runs a libvips saver `save(&buffer, &length)` and returns the bytes.
template <typename Save>
std::string Encode(const char* what, Save save) {
  void* buffer = nullptr;
  size_t length = 0;
  if (save(&buffer, &length) != 0) VipsFailed(what);
  std::unique_ptr<void, decltype(&g_free)> owned(buffer, &g_free);
  return std::string(static_cast<const char*>(buffer), length);
}

VipsImg Add(const VipsImg& a, const VipsImg& b);
VipsImg Band(const VipsImg& in, int band);
VipsImg Linear(const VipsImg& in, double a, double b);  // in * a + b, as float
VipsImg Cast(const VipsImg& in, VipsBandFormat format);
VipsImg Tag(const VipsImg& in, VipsInterpretation interpretation);
VipsImg Memory(const VipsImg& in);  // a copy in memory (writable, and computed once)

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_VIPS_IMAGE_H_
