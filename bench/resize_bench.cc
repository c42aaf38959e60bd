// Resizing against the usual tools: imgproc's Encode in-process, sharp (node, its own prebuilt
// libvips) and libvips' vipsthumbnail (Debian's libvips-tools), on the same generated ~2 MP
// photo-like JPEGs (bench/corpus.h: 1732x1155, Q 90, 4:2:0), one image at a time on one thread,
// for the variants a request's presets ask for: fit inside 800x800 as JPEG q80, and inside
// 400x400 as WebP q70 (never enlarged, auto-rotated, metadata stripped). Prints CPU ms per image
// (the process's CPU time: imgproc's own, node's process.cpuUsage, vipsthumbnail's from wait4),
// imgproc's ratio to each, and the mean output size: medians of --repeats runs of each tool.
//
//   tests/web/install-deps.sh bench/resize   # once: sharp from its lock file
//   build/release/bench/imgproc_resize_bench [--rounds 10] [--repeats 3] [--images 7]
// (scripts/bench.sh --resize does both.)
//
// vipsthumbnail runs once per variant over every image of every round, so its start (loading
// libvips and its modules) is shared by all of them, as sharp's and imgproc's are.
//
// imgproc's allocator settings (src/app/allocator.cc) are linked in, as in the service. Without
// them jemalloc zeroed the region buffers that libvips callocs (28-164 KiB) with
// madvise(MADV_DONTNEED): each one a TLB shootdown to the other core, then page faults. On this
// 2-core VM that was 15-30 of 49-65 ms per image in the JPEG row; with them the row took 22-25 ms,
// against sharp's 22-24. Then libvips 8.14's scalar vips_reduceh was a third of the JPEG row's CPU
// (866 to 800 px wide): with ReduceWidth (src/pipeline/reduce_width.h) the row is 0.74-0.84 of
// sharp's. `--imgproc-only --only jpeg` runs the one row alone, for perf.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "corpus.h"
#include "pipeline/image_codec.h"
#include "request/outputs.h"

namespace {

namespace fs = std::filesystem;
using imgproc::request::OutputFormat;
using imgproc::request::OutputSettings;

struct Variant {
  const char* name;
  OutputSettings output;
};

// One tool's result for one variant.
struct Measure {
  double cpu_ms = 0;  // per image, user + system
  double sys_ms = 0;  // per image, system (the kernel: page faults, madvise, futex)
  double mean_bytes = 0;
  std::string note;  // what ran, or why not
};

std::string Format(const char* format, double a, double b, double c) {
  char text[64];
  std::snprintf(text, sizeof text, format, a, b, c);
  return text;
}

double Seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
}

// This process's CPU seconds so far: user + system, and system.
std::pair<double, double> ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return {Seconds(usage.ru_utime) + Seconds(usage.ru_stime), Seconds(usage.ru_stime)};
}

std::optional<Measure> Imgproc(const std::vector<std::string>& images, const Variant& variant,
                               int rounds) {
  Measure measure;
  for (const std::string& image : images) {  // warm-up, and the sizes
    auto out = imgproc::pipeline::Encode(image, variant.output, {});
    if (!out.ok()) {
      std::fprintf(stderr, "imgproc: %s\n", out.status().message().c_str());
      return std::nullopt;
    }
    measure.mean_bytes += static_cast<double>(out->bytes.size()) / images.size();
  }
  const auto before = ProcessCpuSeconds();
  for (int round = 0; round < rounds; ++round) {
    for (const std::string& image : images) {
      if (!imgproc::pipeline::Encode(image, variant.output, {}).ok()) return std::nullopt;
    }
  }
  const auto after = ProcessCpuSeconds();
  const double n = static_cast<double>(rounds) * static_cast<double>(images.size());
  measure.cpu_ms = 1000 * (after.first - before.first) / n;
  measure.sys_ms = 1000 * (after.second - before.second) / n;
  return measure;
}

// Runs `argv` with `env` added, its standard output into `out` (when given); returns its exit
// status and its CPU seconds (user + system, its children included) from wait4.
struct Ran {
  int status = 0;
  double cpu_seconds = 0;  // user + system
  double sys_seconds = 0;
};
std::optional<Ran> Run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const fs::path* out) {
  const pid_t pid = fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    for (const std::string& assignment : env) putenv(const_cast<char*>(assignment.c_str()));
    if (out != nullptr) {
      const int fd = open(out->c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(126);
    }
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) return std::nullopt;
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return Ran{code, Seconds(usage.ru_utime) + Seconds(usage.ru_stime), Seconds(usage.ru_stime)};
}

std::optional<Measure> Sharp(const fs::path& dir, const Variant& variant, int rounds,
                             const std::string& node, const std::string& script) {
  const fs::path json_path = dir / "sharp.json";
  const OutputSettings& o = variant.output;
  const auto result =
      Run({node, script, dir.string(), std::to_string(o.max_width), std::to_string(o.max_height),
           imgproc::request::ToString(o.format), std::to_string(o.quality), std::to_string(rounds)},
          {}, &json_path);
  if (!result || result->status != 0) {
    std::fprintf(stderr, "sharp: %s failed (run tests/web/install-deps.sh bench/resize first)\n",
                 script.c_str());
    return std::nullopt;
  }
  std::ifstream in(json_path);
  const nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return std::nullopt;
  Measure measure;
  measure.cpu_ms = json.at("cpu_ms_per_image").get<double>();
  measure.sys_ms = json.at("sys_ms_per_image").get<double>();
  const auto bytes = json.at("bytes").get<std::vector<double>>();
  for (double b : bytes) measure.mean_bytes += b / bytes.size();
  measure.note = "sharp " + json.at("sharp").get<std::string>() + " (libvips " +
                 json.at("libvips").get<std::string>() + ")";
  return measure;
}

std::optional<Measure> Vipsthumbnail(const fs::path& dir, const std::vector<fs::path>& files,
                                     const Variant& variant, int rounds,
                                     const std::string& binary) {
  const OutputSettings& o = variant.output;
  // "%s" is each input's name without its extension; "[...]" the saver's options.
  const std::string options = o.format == OutputFormat::kWebp
                                  ? "[Q=" + std::to_string(o.quality) + ",strip]"
                                  : "[Q=" + std::to_string(o.quality) + ",strip,optimize_coding]";
  const fs::path out_dir = dir / "vipsthumbnail";
  fs::create_directories(out_dir);
  std::vector<std::string> argv = {
      binary, "--size", std::to_string(o.max_width) + "x" + std::to_string(o.max_height) + ">",
      "--output",
      (out_dir / ("%s." + std::string(imgproc::request::FileExtension(o.format)) + options))
          .string()};
  for (const fs::path& file : files) argv.push_back(file.string());  // warm-up, and the sizes
  const auto warm = Run(argv, {"VIPS_CONCURRENCY=1"}, nullptr);
  if (!warm || warm->status != 0) {
    std::fprintf(stderr, "%s failed: apt-get install libvips-tools\n", binary.c_str());
    return std::nullopt;
  }
  Measure measure;
  for (const fs::path& file : files) {
    const fs::path output =
        out_dir / (file.stem().string() + "." + imgproc::request::FileExtension(o.format));
    measure.mean_bytes += static_cast<double>(fs::file_size(output)) / files.size();
  }
  argv.resize(5);
  for (int round = 0; round < rounds; ++round) {
    for (const fs::path& file : files) argv.push_back(file.string());
  }
  const auto timed = Run(argv, {"VIPS_CONCURRENCY=1"}, nullptr);
  if (!timed || timed->status != 0) return std::nullopt;
  const double n = static_cast<double>(rounds) * static_cast<double>(files.size());
  measure.cpu_ms = 1000 * timed->cpu_seconds / n;
  measure.sys_ms = 1000 * timed->sys_seconds / n;
  const auto version = [&] {
    char line[64] = "";
    if (FILE* pipe = popen((binary + " --vips-version 2>/dev/null").c_str(), "r")) {
      if (std::fgets(line, sizeof line, pipe) == nullptr) line[0] = '\0';
      pclose(pipe);
    }
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
  };
  measure.note = "vipsthumbnail (" + version() + ")";
  return measure;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("imgproc resize benchmark: Encode against sharp and vipsthumbnail, one thread");
  int rounds = 10;
  int count = 7;
  std::string node = "node";
  std::string script = IMGPROC_RESIZE_SCRIPT;
  std::string vipsthumbnail = "vipsthumbnail";
  std::string keep;
  int repeats = 3;
  bool imgproc_only = false;
  std::string only;
  app.add_option("--rounds", rounds, "measured passes over the images")->capture_default_str();
  app.add_option("--repeats", repeats, "runs of each tool per variant, in turn (medians shown)")
      ->capture_default_str()
      ->check(CLI::Range(1, 15));
  app.add_option("--images", count, "distinct 1732x1155 JPEGs")->capture_default_str();
  app.add_option("--node", node, "node binary")->capture_default_str();
  app.add_option("--sharp-script", script, "bench/resize/resize.mjs")->capture_default_str();
  app.add_option("--vipsthumbnail", vipsthumbnail, "vipsthumbnail binary")->capture_default_str();
  app.add_option("--keep", keep, "write the images and outputs into this folder and keep them");
  app.add_flag("--imgproc-only", imgproc_only, "measure imgproc alone (e.g. under perf)");
  app.add_option("--only", only, "the one variant to run")->check(CLI::IsMember({"jpeg", "webp"}));
  CLI11_PARSE(app, argc, argv);
  if (!imgproc::pipeline::InitCodec().ok()) return 1;

  // Every 8th image of a size class is a PNG: fewer than 8 are all JPEGs.
  const imgproc::bench::SizeClass corpus = imgproc::bench::MakeSizeClass(
      "2 MP", "2mp", 1732, 1155, std::min(count, 7), /*with_444=*/false, /*threads=*/2);
  char dir_template[] = "/tmp/imgproc-resize-bench-XXXXXX";
  if (keep.empty() && mkdtemp(dir_template) == nullptr) return 1;
  const fs::path dir = keep.empty() ? fs::path(dir_template) : fs::path(keep);
  fs::create_directories(dir);
  std::vector<std::string> images;
  std::vector<fs::path> files;
  double input_bytes = 0;
  for (const auto& image : corpus.images) {
    files.push_back(dir / image.name);
    std::ofstream(files.back(), std::ios::binary) << image.bytes;
    images.push_back(image.bytes);
    input_bytes += static_cast<double>(image.bytes.size()) / corpus.images.size();
  }

  const Variant variants[] = {
      {"jpeg q80 fit 800x800",
       {.format = OutputFormat::kJpeg, .quality = 80, .max_width = 800, .max_height = 800}},
      {"webp q70 fit 400x400",
       {.format = OutputFormat::kWebp, .quality = 70, .max_width = 400, .max_height = 400}},
  };
  const char* malloc_conf = std::getenv("MALLOC_CONF");
  std::printf(
      "%zu JPEGs of 1732x1155 (mean %.0f KiB), %d rounds, one image at a time, one "
      "thread; CPU ms per image, median of %d runs in turn; imgproc with its allocator "
      "settings%s%s\n",
      images.size(), input_bytes / 1024, rounds, repeats,
      malloc_conf != nullptr ? ", MALLOC_CONF=" : "", malloc_conf != nullptr ? malloc_conf : "");
  std::printf("%-21s %-32s %8s %8s %9s %20s\n", "variant", "tool", "CPU ms", "of it sys", "out KiB",
              "imgproc/tool");
  // Each tool runs `repeats` times per variant, in turn and in a rotated order each time, so a
  // drift of this VM's speed (10-20% between runs minutes apart) falls on every tool alike; the
  // table shows each tool's median and the median of the ratios of the same turn.
  int status = 0;
  for (const Variant& variant : variants) {
    if (!only.empty() && imgproc::request::ToString(variant.output.format) != only) continue;
    const std::function<std::optional<Measure>()> tools[] = {
        [&] { return Imgproc(images, variant, rounds); },
        [&] { return Sharp(dir, variant, rounds, node, script); },
        [&] { return Vipsthumbnail(dir, files, variant, rounds, vipsthumbnail); },
    };
    const int tool_count = imgproc_only ? 1 : static_cast<int>(std::size(tools));
    std::vector<std::vector<Measure>> turns(tool_count);  // per tool, per repeat
    std::vector<bool> failed(tool_count, false);          // a tool that failed is run no more
    for (int repeat = 0; repeat < repeats; ++repeat) {
      for (int k = 0; k < tool_count; ++k) {
        const int tool = (k + repeat) % tool_count;
        if (failed[tool]) continue;
        std::optional<Measure> measure = tools[tool]();
        failed[tool] = !measure.has_value();
        if (measure) turns[tool].push_back(std::move(*measure));
      }
    }
    if (failed[0]) return 1;
    const auto median = [](std::vector<double> values) {
      std::sort(values.begin(), values.end());
      return values[values.size() / 2];
    };
    for (int tool = 0; tool < tool_count; ++tool) {
      if (failed[tool]) {
        status = 1;
        continue;
      }
      std::vector<double> cpu, sys, ratios;
      for (int repeat = 0; repeat < repeats; ++repeat) {
        cpu.push_back(turns[tool][repeat].cpu_ms);
        sys.push_back(turns[tool][repeat].sys_ms);
        ratios.push_back(turns[0][repeat].cpu_ms / turns[tool][repeat].cpu_ms);
      }
      const auto [low, high] = std::minmax_element(ratios.begin(), ratios.end());
      const std::string name = tool == 0 ? "imgproc Encode" : turns[tool][0].note;
      const std::string ratio =
          tool == 0 ? "" : Format("%.2f (%.2f-%.2f)", median(ratios), *low, *high);
      std::printf("%-21s %-32s %8.2f %8.2f %9.1f %20s\n", tool == 0 ? variant.name : "",
                  name.c_str(), median(cpu), median(sys), turns[tool][0].mean_bytes / 1024,
                  ratio.c_str());
    }
  }
  std::error_code ignored;
  if (keep.empty()) fs::remove_all(dir, ignored);
  return status;
}
