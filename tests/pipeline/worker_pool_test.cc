#include "pipeline/worker_pool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "forwarding_store.h"
#include "queue/embedded_queue.h"
#include "storage/local_storage.h"
#include "test_hosts.h"
#include "test_images.h"

namespace imgproc::pipeline {
namespace {

using namespace std::chrono_literals;

// Commits the first claim that takes an image but answers it with a transient error, as when the
// database restarts between the commit and its reply: the claim's image is leased to a worker
// that never learnt about it.
class LosesFirstClaimStore final : public testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  Result<std::vector<store::ImageTask>> ClaimImages(const std::string& owner, int max,
                                                    request::Millis lease_ms) override {
    auto tasks = ForwardingStore::ClaimImages(owner, max, lease_ms);
    if (tasks.ok() && !tasks->empty() && !lost_one_.exchange(true)) {
      return Transient("connection lost after the claim was committed");
    }
    return tasks;
  }

  bool lost_one() const { return lost_one_; }

 private:
  std::atomic<bool> lost_one_{false};
};

class WorkerPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("imgproc-pool-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto opened = store::OpenStore("sqlite://" + (dir_ / "imgproc.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    store_ = std::move(*opened);
    host_.Add("a.jpg", testing::MakeImage(testing::TestImage::kJpegRgb, 64, 48));
    host_.Add("b.jpg", testing::MakeImage(testing::TestImage::kJpegRgb, 48, 64));
    host_.Start();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  testing::ImageHost host_;
};

// The pool extends only the leases of the images its workers hold, so an image whose claim was
// lost expires and is taken again instead of staying "processing" for ever.
TEST_F(WorkerPoolTest, ImageOfALostClaimIsTakenAgainWhenItsLeaseExpires) {
  LosesFirstClaimStore store(*store_);
  constexpr auto kLease = 300ms;
  queue::EmbeddedQueue queue(store, kLease, 50ms);
  storage::LocalStorage storage(dir_ / "media", "http://127.0.0.1:1/media");
  PipelineOptions options;
  options.workers = 1;
  options.cpu_threads = 1;
  options.lease = kLease;
  options.fetch.allow_private = true;
  WorkerPool pool(store, queue, storage, options, {});

  ASSERT_TRUE(
      store
          .CreateRequest({"r1",
                          std::nullopt,
                          std::nullopt,
                          "",
                          0,
                          {{1, "Shoe", {host_.Url("/img/a.jpg"), host_.Url("/img/b.jpg")}}}})
          .ok());
  pool.Start();
  queue.Notify();

  // The heartbeat runs every lease / 3, so the old "extend every lease of this process" kept the
  // lost image leased for as long as the pool ran.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  request::RequestStatus status = request::RequestStatus::kPending;
  while (std::chrono::steady_clock::now() < deadline) {
    auto view = store.GetRequest("r1");
    ASSERT_TRUE(view.ok()) << view.status().message();
    status = view->status;
    if (status == request::RequestStatus::kCompleted) break;
    std::this_thread::sleep_for(20ms);
  }
  pool.Stop(1s);

  EXPECT_TRUE(store.lost_one());
  ASSERT_STREQ(request::ToString(status), "completed");
  auto view = store.GetRequest("r1");
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->products.size(), 1u);
  EXPECT_EQ(view->images_done, 2);
  EXPECT_TRUE(view->products[0].image_errors.empty());
  ASSERT_TRUE(view->products[0].output_urls.has_value());
  EXPECT_EQ(request::SplitEntries(*view->products[0].output_urls).size(), 2u);
}

}  // namespace
}  // namespace imgproc::pipeline
