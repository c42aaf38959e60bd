// The codec limit: the pipeline's CompressToJpeg on photo-like JPEGs of product-photo sizes
// (about 0.5, 2 and 12 megapixels), in a tight loop on every core, with no network and no store.
// What imgproc end to end can at best approach; reports images/s, CPU ms per image, output size
// and PSNR for the pixel path and the fast paths (JPEG in the DCT domain, PNG inflated by
// libdeflate) side by side.
//
//   build/release/bench/imgproc_codec_bench [--seconds 5] [--threads 0 (= cores)]
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "pipeline/image_codec.h"
#include "process_stats.h"
#include "test_images.h"

int main(int argc, char** argv) {
  CLI::App app("imgproc codec benchmark (CompressToJpeg on all cores, no network)");
  double seconds = 5;
  int threads = 0;
  app.add_option("--seconds", seconds, "time per image size")->capture_default_str();
  app.add_option("--threads", threads, "threads (0 = cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!imgproc::pipeline::InitCodec().ok()) return 1;

  struct Size {
    const char* name;
    int width, height;
  };
  // Each input through the pixel path (decode + encode with libvips) and, for JPEG, the DCT-domain
  // fast path; PSNR is against the decoded input, so both paths are judged by the same reference.
  struct Input {
    const char* name;
    imgproc::testing::TestImage kind;
  };
  const Size sizes[] = {{"0.5 MP", 816, 612}, {"2 MP", 1632, 1224}, {"12 MP", 4000, 3000}};
  const Input inputs[] = {{"jpeg 4:2:0", imgproc::testing::TestImage::kJpegRgb},
                          {"jpeg 4:4:4", imgproc::testing::TestImage::kJpeg444},
                          {"png", imgproc::testing::TestImage::kPngRgb}};
  std::printf("%d threads, %.0f s per row\n", threads, seconds);
  std::printf("%-7s %-11s %-6s %8s %8s %10s %9s %9s %8s\n", "size", "input", "path", "in KiB",
              "out KiB", "images/s", "CPU ms", "PSNR dB", "images");
  for (const Size& size : sizes) {
    for (const Input& input : inputs) {
      const std::string image = imgproc::testing::MakeImage(input.kind, size.width, size.height);
      for (bool fast : {false, true}) {
        imgproc::pipeline::CodecLimits limits;
        limits.jpeg_fast_path = fast;
        limits.png_fast_path = fast;
        auto sample = imgproc::pipeline::CompressToJpeg(image, limits);
        if (!sample.ok()) {
          std::fprintf(stderr, "%s: %s\n", input.name, sample.status().message().c_str());
          return 1;
        }
        if (fast && !sample->fast_path) continue;  // the fast path does not take this input
        std::atomic<int> done{0};
        std::atomic<bool> failed{false};
        const double cpu_before = imgproc::testing::SelfCpuSeconds();
        const auto start = std::chrono::steady_clock::now();
        const auto until = start + std::chrono::duration<double>(seconds);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&] {
            // Bounded: stops at the deadline, or after 100,000 images whatever the machine.
            while (std::chrono::steady_clock::now() < until && done < 100'000) {
              if (!imgproc::pipeline::CompressToJpeg(image, limits).ok()) failed = true;
              ++done;
            }
          });
        }
        for (auto& t : pool) t.join();
        const double wall =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double cpu = imgproc::testing::SelfCpuSeconds() - cpu_before;
        std::printf("%-7s %-11s %-6s %8zu %8zu %10.1f %9.1f %9.2f %8d %s\n", size.name, input.name,
                    fast ? "fast" : "pixel", image.size() / 1024, sample->bytes.size() / 1024,
                    done / wall, 1000 * cpu / done, imgproc::testing::Psnr(sample->bytes, image),
                    done.load(), failed ? "FAILED" : "");
        if (failed) return 1;
      }
    }
  }
  return 0;
}
