// Names the calling thread, as `top -H`, `ps -L`, perf and gdb show it, so that the pipeline's
// stages can be told apart. Linux keeps at most 15 characters; longer names are cut.
#ifndef IMGPROC_COMMON_THREAD_NAME_H_
#define IMGPROC_COMMON_THREAD_NAME_H_

namespace imgproc {

void NameThisThread(const char* name);

}  // namespace imgproc

#endif  // IMGPROC_COMMON_THREAD_NAME_H_
