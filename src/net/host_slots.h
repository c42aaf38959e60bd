// The connections to each host, shared fairly between the parties that use it (the requests
// whose images come from it).
//
// A download waits for its slot before its transfer starts, so the wait is never part of its
// timeout, and libcurl never queues a transfer itself (its own per-host cap did, and a transfer
// that waited there out its timeout failed as "Failed to resolve host ... timeout after 0 ms").
//
// The policy (MayConnect): below `per_host` connections to a host, anyone gets one. Past it, a
// party still gets one while it holds fewer than its fair share (per_host divided by the parties
// holding or waiting for the host), up to twice per_host in all: so one request's slow or hanging
// transfers to a host cannot take every connection to it from the others, and the host never sees
// more than twice the bound. Of the parties waiting, the one holding the fewest goes first.
#ifndef IMGPROC_NET_HOST_SLOTS_H_
#define IMGPROC_NET_HOST_SLOTS_H_

#include <atomic>
#include <chrono>
#include <map>
#include <string>

#include "common/mutex.h"

namespace imgproc::net {

// Whether a party holding `party_holds` of a host's `in_use` connections may open one more, with
// `parties` holding or waiting (itself included) and a bound of `per_host`.
bool MayConnect(int in_use, int per_host, int party_holds, int parties);

class HostSlots {
 public:
  explicit HostSlots(int per_host) : per_host_(per_host) {}
  HostSlots(const HostSlots&) = delete;
  HostSlots& operator=(const HostSlots&) = delete;

  // A held connection slot, given back when destroyed. Empty when the wait was cancelled.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    ~Slot();
    explicit operator bool() const { return slots_ != nullptr; }

   private:
    friend class HostSlots;
    Slot(HostSlots* slots, std::string host, std::string party)
        : slots_(slots), host_(std::move(host)), party_(std::move(party)) {}
    HostSlots* slots_ = nullptr;
    std::string host_;
    std::string party_;
  };

  // Waits for a slot to `host` ("name:port") for `party`, as MayConnect allows. Gives up, with
  // an empty Slot, once `*cancel` is true (looked at every `cancel_check`).
  Slot Acquire(const std::string& host, const std::string& party,
               const std::atomic<bool>* cancel = nullptr,
               std::chrono::milliseconds cancel_check = std::chrono::milliseconds(200))
      EXCLUDES(mu_);

  int in_use(const std::string& host) const EXCLUDES(mu_);
  int waiting(const std::string& host) const EXCLUDES(mu_);

 private:
  struct Party {
    int holds = 0;
    int waiting = 0;
  };
  struct Host {
    int in_use = 0;
    int waiting = 0;
    std::map<std::string, Party> parties;  // those holding or waiting
  };
  bool MayTake(const Host& host, const std::string& party) const REQUIRES(mu_);
  void Release(const std::string& host, const std::string& party) EXCLUDES(mu_);

  const int per_host_;
  mutable Mutex mu_;
  CondVar changed_;  // a slot was given back
  std::map<std::string, Host> hosts_ GUARDED_BY(mu_);
};

}  // namespace imgproc::net

#endif  // IMGPROC_NET_HOST_SLOTS_H_
