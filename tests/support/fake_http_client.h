// An HTTP client that answers from the test: each call is recorded and answered by the handler
// registered for its URL (404 without one), with no network. Handlers may block (to hold a call in
// flight) and should then watch FetchOptions::cancel, as the real client does.
#ifndef IMGPROC_TESTS_SUPPORT_FAKE_HTTP_CLIENT_H_
#define IMGPROC_TESTS_SUPPORT_FAKE_HTTP_CLIENT_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "net/http_client.h"

namespace imgproc::testing {

class FakeHttpClient final : public net::HttpClient {
 public:
  struct Call {
    std::string method;  // GET, POST, or a Send's (PUT, HEAD, ...)
    std::string url;
    std::string body;                  // a POST's or a Send's
    std::vector<std::string> headers;  // a POST's or a Send's extra headers, "Name: value"
    std::string aws_sigv4;             // a Send's HttpRequest::aws_sigv4
  };
  using Handler =
      std::function<Result<net::HttpResponse>(const Call& call, const net::FetchOptions& options)>;

  // Answers calls to `url` (replacing an earlier handler).
  void On(const std::string& url, Handler handler) EXCLUDES(mu_);
  // Answers calls to `url` with `status` and `body` (and headers, lower-case names).
  void Respond(const std::string& url, long status, std::string body = "",
               std::map<std::string, std::string> headers = {}) EXCLUDES(mu_);

  std::vector<Call> calls() const EXCLUDES(mu_);
  size_t count(const std::string& url) const EXCLUDES(mu_);
  // True once `url` has been called at least `n` times (within 10 s of real time).
  bool AwaitCalls(const std::string& url, size_t n) const EXCLUDES(mu_);

  Result<net::HttpResponse> Get(const std::string& url, const net::FetchOptions& options,
                                const net::HeadGate* gate) override EXCLUDES(mu_);
  Result<net::HttpResponse> Post(const std::string& url, const std::string& content_type,
                                 const std::string& body, const std::vector<std::string>& headers,
                                 const net::FetchOptions& options) override EXCLUDES(mu_);
  Result<net::HttpResponse> PostForm(const std::string& url,
                                     const std::vector<net::FormPart>& parts,
                                     const net::FetchOptions& options) override EXCLUDES(mu_);
  Result<net::HttpResponse> Send(const net::HttpRequest& request,
                                 const net::FetchOptions& options) override EXCLUDES(mu_);

 private:
  Result<net::HttpResponse> Answer(Call call, const net::FetchOptions& options) EXCLUDES(mu_);

  mutable Mutex mu_;
  mutable CondVar called_;
  std::map<std::string, Handler> handlers_ GUARDED_BY(mu_);
  std::vector<Call> calls_ GUARDED_BY(mu_);
};

// An HTTP response.
net::HttpResponse Response(long status, std::string body = "",
                           std::map<std::string, std::string> headers = {});

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_FAKE_HTTP_CLIENT_H_
