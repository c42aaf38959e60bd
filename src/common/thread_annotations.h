// Clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html): with
// -Wthread-safety (the clang presets) the compiler checks that every member marked GUARDED_BY is
// touched with its mutex held, and that REQUIRES and EXCLUDES hold at every call. Other compilers
// see nothing.
#ifndef IMGPROC_COMMON_THREAD_ANNOTATIONS_H_
#define IMGPROC_COMMON_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define IMGPROC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define IMGPROC_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) IMGPROC_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY IMGPROC_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) IMGPROC_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) IMGPROC_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) IMGPROC_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) IMGPROC_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) IMGPROC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) IMGPROC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) IMGPROC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) IMGPROC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) IMGPROC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) IMGPROC_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) IMGPROC_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS IMGPROC_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // IMGPROC_COMMON_THREAD_ANNOTATIONS_H_
