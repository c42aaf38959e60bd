// A store that hands every call to another one: the base of test stores that change a call or
// two of a real store (hold it, fail it) and leave the rest as they are.
#ifndef IMGPROC_TESTS_SUPPORT_FORWARDING_STORE_H_
#define IMGPROC_TESTS_SUPPORT_FORWARDING_STORE_H_

#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace imgproc::testing {

class ForwardingStore : public store::Store {
 public:
  explicit ForwardingStore(store::Store& inner) : inner_(inner) {}

  Status CreateRequest(const store::NewRequest& request) override {
    return inner_.CreateRequest(request);
  }
  Result<request::CancelVerdict> CancelRequest(const std::string& request_id,
                                               const std::optional<std::string>& owner) override {
    return inner_.CancelRequest(request_id, owner);
  }
  Result<request::RequestView> GetRequest(const std::string& request_id) override {
    return inner_.GetRequest(request_id);
  }
  Result<std::vector<request::RequestSummary>> ListRequests(const std::optional<std::string>& owner,
                                                            int limit) override {
    return inner_.ListRequests(owner, limit);
  }
  Result<int64_t> CountUnfinishedImages() override { return inner_.CountUnfinishedImages(); }
  Result<std::vector<store::ImageTask>> ClaimImages(const std::string& owner, int max,
                                                    request::Millis lease_ms) override {
    return inner_.ClaimImages(owner, max, lease_ms);
  }
  Result<std::vector<store::ImageTask>> ClaimImagesById(const std::vector<int64_t>& image_ids,
                                                        const std::string& owner,
                                                        request::Millis lease_ms) override {
    return inner_.ClaimImagesById(image_ids, owner, lease_ms);
  }
  Result<int> ExtendLeases(const std::string& owner_prefix, const std::vector<int64_t>& image_ids,
                           request::Millis lease_ms) override {
    return inner_.ExtendLeases(owner_prefix, image_ids, lease_ms);
  }
  Result<bool> RecordImage(int64_t image_id, const std::string& owner,
                           const request::ImageOutcome& outcome) override {
    return inner_.RecordImage(image_id, owner, outcome);
  }
  Result<bool> HoldsLease(int64_t image_id, const std::string& owner) override {
    return inner_.HoldsLease(image_id, owner);
  }
  Result<int> ReleaseLeases() override { return inner_.ReleaseLeases(); }
  Result<std::vector<int64_t>> TakeImagesToEnqueue(std::optional<request::Millis> enqueued_before,
                                                   int max) override {
    return inner_.TakeImagesToEnqueue(enqueued_before, max);
  }
  Result<std::optional<request::Millis>> NextImageDue() override { return inner_.NextImageDue(); }
  Result<std::vector<store::WebhookJob>> ClaimWebhooks(int max, request::Millis lease_ms) override {
    return inner_.ClaimWebhooks(max, lease_ms);
  }
  Status RecordWebhook(const std::string& request_id, bool delivered,
                       std::optional<int> http_status,
                       std::optional<request::Millis> retry_at) override {
    return inner_.RecordWebhook(request_id, delivered, http_status, retry_at);
  }

 protected:
  store::Store& inner_;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_FORWARDING_STORE_H_
