// Turns the calls several threads make at the same time into one call of a batch function: a
// group commit, as LevelDB's DBImpl::Write. The first caller in line calls the batch function
// with its input and those of every caller that queued behind it while the previous batch ran;
// each caller gets its own answer. A store transaction per call becomes one per batch, and a
// lone caller pays nothing more than the call (no timer, no waiting for company).
#ifndef IMGPROC_COMMON_BATCHER_H_
#define IMGPROC_COMMON_BATCHER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/result.h"

namespace imgproc {

template <typename In, typename Out>
class Batcher {
 public:
  // `batch` answers its inputs in order, one output each, or fails for all of them.
  using BatchFn = std::function<Result<std::vector<Out>>(const std::vector<In>&)>;

  explicit Batcher(BatchFn batch) : batch_(std::move(batch)) {}
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Blocks until the batch holding `in` has run. The line is at most one call per thread, so a
  // batch is bounded by the threads that call.
  Result<Out> Call(In in) EXCLUDES(mu_) {
    Pending me{std::move(in), std::nullopt, {}};
    MutexLock lock(&mu_);
    line_.push_back(&me);
    while (!me.answer && line_.front() != &me) me.turn.Wait(&mu_);
    if (me.answer) return *std::move(me.answer);

    // At the front: run every call in line, this one first.
    const std::vector<Pending*> batch(line_.begin(), line_.end());
    std::vector<In> inputs;
    inputs.reserve(batch.size());
    for (Pending* pending : batch) inputs.push_back(std::move(pending->in));
    lock.Unlock();
    Result<std::vector<Out>> outs = batch_(inputs);
    if (outs.ok() && outs->size() != batch.size()) {
      outs = Internal("batch answered " + std::to_string(outs->size()) + " of " +
                      std::to_string(batch.size()));
    }
    lock.Lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (outs.ok()) {
        batch[i]->answer.emplace(static_cast<Out>(std::move((*outs)[i])));
      } else {
        batch[i]->answer.emplace(outs.status());
      }
      line_.pop_front();
      if (batch[i] != &me) batch[i]->turn.Signal();
    }
    if (!line_.empty()) line_.front()->turn.Signal();  // the next batch's runner
    return *std::move(me.answer);
  }

  // The calls in line now, the running batch's included (for tests that wait for a line).
  size_t InLine() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return line_.size();
  }

 private:
  // A call in line; `answer` (under mu_) is set by the runner of its batch.
  struct Pending {
    In in;
    std::optional<Result<Out>> answer;
    CondVar turn;  // answered, or at the front of the line
  };

  const BatchFn batch_;
  Mutex mu_;
  std::deque<Pending*> line_ GUARDED_BY(mu_);  // the front one runs the batch
};

}  // namespace imgproc

#endif  // IMGPROC_COMMON_BATCHER_H_
