// The HTTP server against hostile clients, through the real binary: what the outside audit of
// issue 19 found (bodies unbounded when gzip-encoded, chunked or unframed, and read before the API
// key was checked; byte-range amplification; request smuggling; slow bodies holding every
// connection), each as it was reproduced.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "process_client.h"
#include "process_stats.h"
#include "raw_http.h"

namespace imgproc::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// `size` bytes of one repeated character, gzip-encoded (about 1,000:1).
std::string GzipOfRepeated(size_t size, const std::string& prefix, const std::string& suffix) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
  std::string out;
  char buffer[64 * 1024];
  const auto feed = [&](const char* data, size_t n, int flush) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    zs.avail_in = static_cast<uInt>(n);
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buffer);
      zs.avail_out = sizeof buffer;
      deflate(&zs, flush);
      out.append(buffer, sizeof buffer - zs.avail_out);
    } while (zs.avail_out == 0);
  };
  feed(prefix.data(), prefix.size(), Z_NO_FLUSH);
  const std::string chunk(1 << 20, 'a');
  for (size_t done = 0; done < size; done += chunk.size()) {
    feed(chunk.data(), std::min(chunk.size(), size - done), Z_NO_FLUSH);
  }
  feed(suffix.data(), suffix.size(), Z_FINISH);
  deflateEnd(&zs);
  return out;
}

// A multipart upload head for a body of `length` bytes (or chunked, when `length` is empty).
std::string UploadHead(const std::string& framing, const std::string& extra = "") {
  return "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\n"
         "Content-Type: multipart/form-data; boundary=b\r\n" +
         framing + extra + "\r\n";
}

const std::string kPartStart =
    "--b\r\nContent-Disposition: form-data; name=\"csv_file\"; filename=\"p.csv\"\r\n\r\n"
    "Serial Number,Product Name,Input Image Urls\n";
const std::string kPartEnd = "\r\n--b--\r\n";

// A request whose answer would show it was taken for one (the metrics are public).
const std::string kHidden = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

class HttpHardeningTest : public ::testing::Test {
 protected:
  void StartServer(std::map<std::string, std::string> env) {
    env.emplace("LOG_LEVEL", "warn");
    server_ = std::make_unique<ImgprocProcess>(dir_.path(), std::move(env));
    ASSERT_TRUE(server_->Start()) << server_->log();
  }
  // The growth of the server's peak resident memory since `before`, in MiB.
  double GrownMib(long before) const {
    return static_cast<double>(PeakRssKib(server_->pid()) - before) / 1024;
  }

  TempDir dir_{"hard"};
  std::unique_ptr<ImgprocProcess> server_;
};

// Finding 1: a 256 KB gzip body that decodes to 256 MiB. The old transport inflated it whole
// before its length check (a 2 MB one took 4 GB); now it is refused as the decoded body passes
// the limit.
TEST_F(HttpHardeningTest, AGzipBodyIsRefusedAsItsDecodedSizePassesTheLimit) {
  StartServer({{"MAX_CSV_BYTES", "1000000"}});
  const std::string body = GzipOfRepeated(256u << 20, kPartStart, kPartEnd);
  ASSERT_LT(body.size(), 1'000'000u);
  const long before = PeakRssKib(server_->pid());
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, UploadHead("Content-Length: " + std::to_string(body.size()) + "\r\n",
                                     "Content-Encoding: gzip\r\n") +
                              body));
  const std::string answer = ReadAll(fd);
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413 ", 0), 0u) << answer.substr(0, 300);
  EXPECT_NE(answer.find("Request body is too large"), std::string::npos) << answer;
  EXPECT_LT(GrownMib(before), 24) << "MiB of peak memory grown";
  // A gzip-encoded upload within the limit is decoded and accepted.
  const std::string small = GzipOfRepeated(0, kPartStart + "1,P,x\n", kPartEnd);
  const int ok = Connect(server_->port());
  ASSERT_TRUE(SendAll(ok, UploadHead("Content-Length: " + std::to_string(small.size()) + "\r\n",
                                     "Content-Encoding: gzip\r\nConnection: close\r\n") +
                              small));
  const std::string accepted = ReadAll(ok);
  close(ok);
  EXPECT_EQ(accepted.rfind("HTTP/1.1 202 ", 0), 0u) << accepted;
}

// Finding 1: with API keys on, an upload without a key is answered from its head, before a byte
// of its body is read: the client that announced 10 MB and sent none gets its 401 at once, and a
// gzip bomb without a key is never inflated.
TEST_F(HttpHardeningTest, AnUploadWithoutAKeyIsRefusedBeforeItsBodyIsRead) {
  StartServer({{"API_KEYS", "secret"}});
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, UploadHead("Content-Length: 10000000\r\n")));
  std::string buffered;
  const auto start = Clock::now();
  const RawResponse r = ReadResponse(fd, buffered);
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(r.head.rfind("HTTP/1.1 401 ", 0), 0u) << r.head;
  EXPECT_NE(r.head.find("Connection: close"), std::string::npos) << r.head;
  close(fd);

  const std::string bomb = GzipOfRepeated(256u << 20, kPartStart, kPartEnd);
  const long before = PeakRssKib(server_->pid());
  const int bomber = Connect(server_->port());
  ASSERT_GE(bomber, 0);
  SendAll(bomber, UploadHead("Content-Length: " + std::to_string(bomb.size()) + "\r\n",
                             "Content-Encoding: gzip\r\n") +
                      bomb);
  const std::string answer = ReadAll(bomber);
  close(bomber);
  EXPECT_EQ(answer.rfind("HTTP/1.1 401 ", 0), 0u) << answer.substr(0, 300);
  EXPECT_LT(GrownMib(before), 24) << "MiB of peak memory grown";
}

// Finding 1: a chunked body has no length to check up front; it is cut as it passes the limit
// (the old transport read a whole 1 GiB of it into memory).
TEST_F(HttpHardeningTest, AChunkedBodyIsCutAtTheLimit) {
  StartServer({{"MAX_CSV_BYTES", "1000000"}});
  const long before = PeakRssKib(server_->pid());
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  std::string answer;
  std::thread reader([&] { answer = ReadAll(fd); });
  size_t sent = 0;
  if (SendAll(fd, UploadHead("Transfer-Encoding: chunked\r\n"))) {
    const std::string chunk = "10000\r\n" + std::string(0x10000, 'a') + "\r\n";
    while (sent < (1u << 30) && SendAll(fd, chunk)) sent += 0x10000;
  }
  shutdown(fd, SHUT_WR);
  reader.join();
  close(fd);
  EXPECT_LT(sent, 64u << 20) << "bytes the server took";
  EXPECT_EQ(answer.rfind("HTTP/1.1 413 ", 0), 0u) << answer.substr(0, 300);
  EXPECT_LT(GrownMib(before), 24) << "MiB of peak memory grown";
}

// Finding 1: a POST with neither Content-Length nor Transfer-Encoding has no body (RFC 9112);
// the old transport read until the connection closed. What follows it is not a request: refused,
// and the connection closed.
TEST_F(HttpHardeningTest, APostWithoutFramingHasNoBody) {
  StartServer({});
  const long before = PeakRssKib(server_->pid());
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  std::string answer;
  std::thread reader([&] { answer = ReadAll(fd); });
  size_t sent = 0;
  if (SendAll(fd, UploadHead(""))) {
    const std::string chunk(1 << 20, 'x');
    while (sent < (256u << 20) && SendAll(fd, chunk)) sent += chunk.size();
  }
  shutdown(fd, SHUT_WR);
  reader.join();
  close(fd);
  EXPECT_LT(sent, 64u << 20) << "bytes the server took";
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << answer.substr(0, 300);
  EXPECT_NE(answer.find("No CSV file provided"), std::string::npos) << answer.substr(0, 300);
  EXPECT_EQ(CountResponses(answer), 2) << answer;  // then "Bad request" for the garbage
  EXPECT_LT(GrownMib(before), 24) << "MiB of peak memory grown";
}

// Finding 2: thousands of ranges of one public document made a 64 MB answer per request; a range
// of an error response cut its JSON. Now only a stored image answers one range; anything else is
// sent whole.
TEST_F(HttpHardeningTest, RangesAreNeverListsAndNeverOfErrors) {
  StartServer({});
  std::string ranges = "bytes=0-";
  for (int i = 0; i < 2600; ++i) ranges += ",0-";
  auto whole = server_->Get("/openapi.json");
  ASSERT_TRUE(whole);
  const long before = PeakRssKib(server_->pid());
  std::vector<int> silent;  // connections that never read their answer
  for (int i = 0; i < 30; ++i) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(
        SendAll(fd, "GET /openapi.json HTTP/1.1\r\nHost: x\r\nRange: " + ranges + "\r\n\r\n"));
    silent.push_back(fd);
  }
  const int fd = Connect(server_->port());
  ASSERT_TRUE(SendAll(fd, "GET /openapi.json HTTP/1.1\r\nHost: x\r\nRange: " + ranges +
                              "\r\n\r\nGET /status/00000000-0000-4000-8000-000000000000/ "
                              "HTTP/1.1\r\nHost: x\r\nRange: bytes=-5\r\n\r\n"));
  std::string buffered;
  const RawResponse doc = ReadResponse(fd, buffered);
  EXPECT_EQ(doc.head.rfind("HTTP/1.1 200 ", 0), 0u) << doc.head;
  EXPECT_EQ(doc.body, whole->body);
  const RawResponse missing = ReadResponse(fd, buffered);
  EXPECT_EQ(missing.head.rfind("HTTP/1.1 404 ", 0), 0u) << missing.head;
  EXPECT_EQ(missing.head.find("Content-Range"), std::string::npos) << missing.head;
  EXPECT_EQ(missing.body, R"({"error":"Request ID not found"})");
  close(fd);
  EXPECT_LT(GrownMib(before), 24) << "MiB of peak memory grown";
  for (const int s : silent) close(s);
}

// Finding 5: each of these framings carried a hidden second request that was answered (or, for
// the parser's own errors, the bytes after the error were). Now each is refused with one answer
// and its connection closed.
TEST_F(HttpHardeningTest, SmuggledRequestsAreNeverAnswered) {
  StartServer({{"MAX_HEADER_BYTES", "16384"}});
  const std::string length = std::to_string(kHidden.size());
  const std::string big(20'000, 'a');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"two lengths", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: " +
                          length + "\r\n\r\n"},
      {"equal lengths", "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\nContent-Length: " + length +
                            "\r\nContent-Length: " + length + "\r\n\r\n"},
      {"space before colon",
       "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : " + length + "\r\n\r\n"},
      {"bare LF", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + "\n\r\n"},
      {"bad chunk size",
       "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
      {"length and chunked",
       "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"chunked not last",
       "POST /api/p/upload/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"},
      {"long URI", "GET /" + big + " HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"long header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + big + "\r\n\r\n"},
      {"PROPFIND with a body",
       "PROPFIND /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + "\r\n\r\n"},
      {"HTTP/2.0", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n"},
  };
  for (const auto& [name, request] : cases) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0) << name;
    SendAll(fd, request + kHidden);
    const std::string answer = ReadAll(fd);  // until the server closes
    close(fd);
    EXPECT_EQ(CountResponses(answer), 1) << name << ": " << answer.substr(0, 400);
    EXPECT_EQ(answer.find("imgproc_"), std::string::npos) << name << ": metrics answered";
    EXPECT_EQ(answer.rfind("HTTP/1.1 4", 0) == 0 || answer.rfind("HTTP/1.1 505", 0) == 0, true)
        << name << ": " << answer.substr(0, 200);
    EXPECT_NE(answer.find("Connection: close"), std::string::npos) << name << ": " << answer;
  }
  // A chunked body with a trailer is one request; the request after it is the next one.
  const std::string body = "0\r\nX-Trailer: 1\r\n\r\n";
  const int fd = Connect(server_->port());
  SendAll(fd, UploadHead("Transfer-Encoding: chunked\r\n") + body +
                  "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string answer = ReadAll(fd);
  close(fd);
  EXPECT_EQ(CountResponses(answer), 2) << answer;
  EXPECT_NE(answer.find("No CSV file provided"), std::string::npos) << answer;
  EXPECT_NE(answer.find(R"({"status":"ok"})"), std::string::npos) << answer;
}

// Finding 7: a body dripped a byte at a time kept its connection for as long as the client liked
// (each read had its own timeout). It must now arrive within BODY_TIMEOUT_MS, extended by a
// second per BODY_MIN_RATE bytes.
TEST_F(HttpHardeningTest, ADrippedBodyGets408AtItsDeadline) {
  StartServer({{"BODY_TIMEOUT_MS", "1000"}, {"BODY_MIN_RATE", "500"}});
  const int fd = Connect(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, UploadHead("Content-Length: 100000\r\n") + kPartStart));
  std::atomic<bool> stop{false};
  std::thread drip([&] {  // 10 bytes a second, for at most 10 s
    for (int i = 0; i < 100 && !stop; ++i) {
      if (send(fd, "a", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto start = Clock::now();
  const std::string answer = ReadAll(fd);
  const auto took = Clock::now() - start;
  stop = true;
  drip.join();
  close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408 ", 0), 0u) << answer.substr(0, 200);
  EXPECT_NE(answer.find("Request body not received in time"), std::string::npos) << answer;
  EXPECT_LT(took, 5s);
}

// Finding 7: hundreds of slow connections from one address took every connection thread, and
// /healthz went unanswered. One address now holds at most MAX_CONNECTIONS_PER_CLIENT of them
// (the rest are refused at once), and another client is served meanwhile.
TEST_F(HttpHardeningTest, OneClientsSlowConnectionsLeaveRoomForOthers) {
  StartServer({{"HTTP_THREADS", "4"},
               {"MAX_CONNECTIONS", "16"},
               {"MAX_CONNECTIONS_PER_CLIENT", "4"},
               {"BODY_TIMEOUT_MS", "30000"}});
  // From an address of their own: the start-up check's connection from 127.0.0.1 may still be
  // counted while the server notices it closed.
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) {
    const int fd = Connect(server_->port(), "127.0.0.3");
    ASSERT_GE(fd, 0);
    SendAll(fd, UploadHead("Content-Length: 1000000\r\n"));  // and never the body
    slow.push_back(fd);
  }
  // The connections past the client's share are refused at once.
  int refused = 0;
  std::vector<pollfd> waiting;
  for (const int fd : slow) waiting.push_back({fd, POLLIN, 0});
  const auto deadline = Clock::now() + 5s;
  while (refused < 16 && Clock::now() < deadline &&
         poll(waiting.data(), waiting.size(), 100) >= 0) {
    for (pollfd& p : waiting) {
      if (p.fd < 0 || p.revents == 0) continue;
      char buf[512] = {};
      refused += recv(p.fd, buf, sizeof buf - 1, MSG_DONTWAIT) > 0 &&
                 std::string(buf).rfind("HTTP/1.1 503 ", 0) == 0;
      p.fd = -1;  // answered (or closed): not polled again
    }
  }
  EXPECT_EQ(refused, 16);
  // Another address is served while the first holds its share.
  const int other = Connect(server_->port(), "127.0.0.2");
  ASSERT_GE(other, 0);
  ASSERT_TRUE(SendAll(other, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  pollfd p{other, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 3000), 1) << "/healthz not answered within 3 s";
  std::string buffered;
  EXPECT_EQ(ReadResponse(other, buffered).head.rfind("HTTP/1.1 200 ", 0), 0u);
  close(other);
  for (const int fd : slow) close(fd);
}

}  // namespace
}  // namespace imgproc::testing
