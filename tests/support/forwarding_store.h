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
  Result<request::RequestView> GetRequestPage(const std::string& request_id,
                                              const request::ProductRange& range) override {
    return inner_.GetRequestPage(request_id, range);
  }
  Result<std::vector<request::RequestSummary>> ListRequests(const std::optional<std::string>& owner,
                                                            int limit) override {
    return inner_.ListRequests(owner, limit);
  }
  Result<int64_t> RequestRound(const std::string& request_id) override {
    return inner_.RequestRound(request_id);
  }
  Result<int64_t> CountUnfinishedImages() override { return inner_.CountUnfinishedImages(); }
  Result<std::vector<std::vector<store::ImageTask>>> ClaimImagesFor(
      const std::vector<store::ImageClaim>& claims, request::Millis lease_ms) override {
    return inner_.ClaimImagesFor(claims, lease_ms);
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
  Result<std::vector<store::Recorded>> RecordImages(
      const std::vector<store::ImageResult>& results) override {
    return inner_.RecordImages(results);
  }
  Result<std::vector<bool>> HoldLeases(
      const std::vector<std::pair<int64_t, std::string>>& leases) override {
    return inner_.HoldLeases(leases);
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
  Status RecordWebhook(const std::string& request_id, int64_t round, bool delivered,
                       std::optional<int> http_status,
                       std::optional<request::Millis> retry_at) override {
    return inner_.RecordWebhook(request_id, round, delivered, http_status, retry_at);
  }
  Result<request::RetryVerdict> RetryRequest(const std::string& request_id,
                                             const std::optional<std::string>& owner) override {
    return inner_.RetryRequest(request_id, owner);
  }
  Result<std::optional<request::CachedSource>> FindSource(const std::string& url,
                                                          const std::string& variant) override {
    return inner_.FindSource(url, variant);
  }
  Status RememberSource(const std::string& url, const std::string& variant,
                        const std::string& sha256, const std::optional<std::string>& etag,
                        const std::optional<std::string>& last_modified,
                        int64_t input_bytes) override {
    return inner_.RememberSource(url, variant, sha256, etag, last_modified, input_bytes);
  }
  Result<store::ContentClaim> ClaimContent(const std::string& sha256, const std::string& variant,
                                           const std::string& owner, request::Millis stored_since,
                                           request::Millis lease_ms) override {
    return inner_.ClaimContent(sha256, variant, owner, stored_since, lease_ms);
  }
  Status StoreContent(const std::string& sha256, const std::string& variant,
                      const std::string& owner, const std::string& output_url, int64_t output_bytes,
                      const std::vector<request::VariantOutput>& variants) override {
    return inner_.StoreContent(sha256, variant, owner, output_url, output_bytes, variants);
  }
  Status ReleaseContent(const std::string& sha256, const std::string& variant,
                        const std::string& owner) override {
    return inner_.ReleaseContent(sha256, variant, owner);
  }
  Status ForgetContent(const std::string& sha256, const std::string& variant) override {
    return inner_.ForgetContent(sha256, variant);
  }
  Result<int64_t> PurgeCache(request::Millis before) override { return inner_.PurgeCache(before); }

 protected:
  store::Store& inner_;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_FORWARDING_STORE_H_
