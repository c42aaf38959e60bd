// The codec limit: the pipeline's CompressToJpeg on photo-like JPEGs of product-photo sizes
// (about 0.5, 2 and 12 megapixels), in a tight loop on every core, with no network and no store.
// What imgproc end to end can at best approach; reports images/s and CPU ms per image.
//
//   build/release/bench/imgproc_codec_bench [--seconds 5] [--threads 0 (= cores)]
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "pipeline/image_codec.h"
#include "test_images.h"

namespace {

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

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
  const Size sizes[] = {{"0.5 MP", 816, 612}, {"2 MP", 1632, 1224}, {"12 MP", 4000, 3000}};
  std::printf("%d threads, %.0f s per size\n", threads, seconds);
  for (const Size& size : sizes) {
    const std::string jpeg =
        imgproc::testing::MakeImage(imgproc::testing::TestImage::kJpegRgb, size.width, size.height);
    std::atomic<int> done{0};
    std::atomic<bool> failed{false};
    const double cpu_before = ProcessCpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    const auto until = start + std::chrono::duration<double>(seconds);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        // Bounded: stops at the deadline, or after 100,000 images whatever the machine.
        while (std::chrono::steady_clock::now() < until && done < 100'000) {
          if (!imgproc::pipeline::CompressToJpeg(jpeg, {}).ok()) failed = true;
          ++done;
        }
      });
    }
    for (auto& t : pool) t.join();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu = ProcessCpuSeconds() - cpu_before;
    std::printf("%-7s %5dx%-5d %6zu KiB  %6d images  %7.1f images/s  %7.1f ms CPU/image  %s\n",
                size.name, size.width, size.height, jpeg.size() / 1024, done.load(), done / wall,
                1000 * cpu / done, failed ? "FAILED" : "ok");
    if (failed) return 1;
  }
  return 0;
}
