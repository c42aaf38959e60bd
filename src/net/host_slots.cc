#include "net/host_slots.h"

#include <algorithm>
#include <utility>

namespace imgproc::net {

bool MayConnect(int in_use, int per_host, int party_holds, int parties) {
  if (in_use < per_host) return true;
  const int share = std::max(1, per_host / std::max(1, parties));
  return in_use < 2 * per_host && party_holds < share;
}

HostSlots::Slot::Slot(Slot&& other) noexcept
    : slots_(std::exchange(other.slots_, nullptr)),
      host_(std::move(other.host_)),
      party_(std::move(other.party_)) {}

HostSlots::Slot& HostSlots::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (slots_ != nullptr) slots_->Release(host_, party_);
    slots_ = std::exchange(other.slots_, nullptr);
    host_ = std::move(other.host_);
    party_ = std::move(other.party_);
  }
  return *this;
}

HostSlots::Slot::~Slot() {
  if (slots_ != nullptr) slots_->Release(host_, party_);
}

bool HostSlots::MayTake(const Host& host, const std::string& party) const {
  const Party& mine = host.parties.at(party);
  if (!MayConnect(host.in_use, per_host_, mine.holds, static_cast<int>(host.parties.size()))) {
    return false;
  }
  // Of the parties waiting, the one holding the fewest goes first.
  return std::none_of(host.parties.begin(), host.parties.end(), [&](const auto& other) {
    return other.second.waiting > 0 && other.second.holds < mine.holds;
  });
}

HostSlots::Slot HostSlots::Acquire(const std::string& host, const std::string& party,
                                   const std::atomic<bool>* cancel,
                                   std::chrono::milliseconds cancel_check) {
  MutexLock lock(&mu_);
  Host& h = hosts_[host];
  Party& mine = h.parties[party];
  ++mine.waiting;
  ++h.waiting;
  while (!MayTake(h, party)) {
    if (cancel != nullptr && cancel->load()) {
      --mine.waiting;
      --h.waiting;
      if (mine.holds == 0 && mine.waiting == 0) h.parties.erase(party);
      if (h.in_use == 0 && h.waiting == 0) hosts_.erase(host);
      changed_.SignalAll();  // the share of the others grew
      return Slot();
    }
    (void)changed_.WaitUntil(&mu_, std::chrono::steady_clock::now() + cancel_check);
  }
  --mine.waiting;
  --h.waiting;
  ++mine.holds;
  ++h.in_use;
  return Slot(this, host, party);
}

void HostSlots::Release(const std::string& host, const std::string& party) {
  {
    MutexLock lock(&mu_);
    auto h = hosts_.find(host);
    if (h == hosts_.end()) return;
    auto p = h->second.parties.find(party);
    if (p != h->second.parties.end() && --p->second.holds == 0 && p->second.waiting == 0) {
      h->second.parties.erase(p);
    }
    if (--h->second.in_use == 0 && h->second.waiting == 0) hosts_.erase(h);
  }
  changed_.SignalAll();
}

int HostSlots::in_use(const std::string& host) const {
  MutexLock lock(&mu_);
  auto h = hosts_.find(host);
  return h == hosts_.end() ? 0 : h->second.in_use;
}

int HostSlots::waiting(const std::string& host) const {
  MutexLock lock(&mu_);
  auto h = hosts_.find(host);
  return h == hosts_.end() ? 0 : h->second.waiting;
}

}  // namespace imgproc::net
