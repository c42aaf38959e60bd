// The speed benchmark's image corpus: deterministic photo-like images of product-photo sizes,
// generated in memory with libvips at start (nothing binary is checked in).
//
// Photo-like means multi-scale texture (Perlin noise at several cell sizes per colour channel,
// fixed seeds), a smooth gradient and a little sensor noise, encoded like a camera would: JPEG
// Q 90 with 4:2:0 chroma subsampling. Every 8th image of a size class is a PNG instead.
#ifndef IMGPROC_BENCH_CORPUS_H_
#define IMGPROC_BENCH_CORPUS_H_

#include <string>
#include <vector>

namespace imgproc::bench {

// One encoded image of the corpus, as the image host serves it.
struct CorpusImage {
  std::string name;  // e.g. "2mp-3.jpg", unique in the corpus; the URL path is /img/<name>
  std::string mime;  // "image/jpeg" or "image/png"
  std::string bytes;
};

// The images of one size class.
struct SizeClass {
  std::string label;  // "0.5 MP", "2 MP", "12 MP"
  std::string key;    // "0.5mp", "2mp", "12mp" (JSON keys and file names)
  int width = 0;
  int height = 0;
  std::vector<CorpusImage> images;  // `count` images; index % 8 == 7 is a PNG, the rest JPEGs
  // The same pictures as 4:4:4 JPEGs (no chroma subsampling), for codec-path comparisons; empty
  // unless asked for.
  std::vector<CorpusImage> jpeg444;
};

// Generates `count` distinct images of width x height (the same arguments always give the same
// bytes), using up to `threads` threads. Aborts the process if libvips fails.
SizeClass MakeSizeClass(const std::string& label, const std::string& key, int width, int height,
                        int count, bool with_444, int threads);

}  // namespace imgproc::bench

#endif  // IMGPROC_BENCH_CORPUS_H_
