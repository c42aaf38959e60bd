// The settings of imgproc's allocator, jemalloc (CMakeLists.txt links it outside the sanitizer
// builds; docs/speed.md has the study behind it). jemalloc reads this string when it starts, and
// MALLOC_CONF from the environment after it, so a deployment can still override any of them.
//
// thp:always. libvips callocs its pixel buffers (vips_tracked_malloc), and jemalloc zeroes a
// recycled block by madvise(MADV_DONTNEED) unless huge pages are on, when it memsets it instead.
// The madvise cost a TLB shootdown to the other core and then a page fault per 4 KiB page touched
// again: 7,625 faults per 12 MP image, 245 per 2 MP image. With thp:always they are 34-109 and
// 10-23, and on this 2-core VM (scripts/bench.sh, A/B in one session) the codec loop took 11 ms
// instead of 17.6 per 2 MP image and 90 instead of 217 per 12 MP image, imgproc's 2 MP run went
// from 84 to 110-139 images/s, and the resize bench's JPEG row from 49 to 22-25 ms.
//
// narenas:2 (jemalloc's default is 4 per core, 8 here). Huge pages keep more memory resident per
// arena: with 8 arenas the 200 x 12 MP request peaked at 307-311 MiB, over the 300 MB bound; with
// 2 at 245-275 MiB, and with the pixel budget at 80 MP (pipeline/worker_pool.h) at 244 MiB. One
// arena took 7-15% more CPU per 2 MP image than two (two runs of three).
extern "C" {
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): jemalloc's interface
const char* malloc_conf = "thp:always,narenas:2";
}
