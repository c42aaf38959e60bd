#include "fake_http_client.h"

#include <chrono>

namespace imgproc::testing {

net::HttpResponse Response(long status, std::string body,
                           std::map<std::string, std::string> headers) {
  net::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

void FakeHttpClient::On(const std::string& url, Handler handler) {
  MutexLock lock(&mu_);
  handlers_[url] = std::move(handler);
}

void FakeHttpClient::Respond(const std::string& url, long status, std::string body,
                             std::map<std::string, std::string> headers) {
  On(url,
     [status, body = std::move(body), headers = std::move(headers)](
         const Call&, const net::FetchOptions&) -> Result<net::HttpResponse> {
       return Response(status, body, headers);
     });
}

std::vector<FakeHttpClient::Call> FakeHttpClient::calls() const {
  MutexLock lock(&mu_);
  return calls_;
}

size_t FakeHttpClient::count(const std::string& url) const {
  MutexLock lock(&mu_);
  size_t n = 0;
  for (const Call& c : calls_) n += c.url == url;
  return n;
}

bool FakeHttpClient::AwaitCalls(const std::string& url, size_t n) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  MutexLock lock(&mu_);
  while (true) {
    size_t seen = 0;
    for (const Call& c : calls_) seen += c.url == url;
    if (seen >= n) return true;
    if (!called_.WaitUntil(&mu_, deadline) && std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
  }
}

Result<net::HttpResponse> FakeHttpClient::Answer(Call call, const net::FetchOptions& options) {
  Handler handler;
  {
    MutexLock lock(&mu_);
    calls_.push_back(call);
    if (auto it = handlers_.find(call.url); it != handlers_.end()) handler = it->second;
  }
  called_.SignalAll();
  if (!handler) return Response(404);
  return handler(call, options);
}

Result<net::HttpResponse> FakeHttpClient::Get(const std::string& url,
                                              const net::FetchOptions& options,
                                              const net::HeadGate* /*gate*/) {
  return Answer({"GET", url, "", {}, ""}, options);
}

Result<net::HttpResponse> FakeHttpClient::Post(const std::string& url,
                                               const std::string& /*content_type*/,
                                               const std::string& body,
                                               const std::vector<std::string>& headers,
                                               const net::FetchOptions& options) {
  return Answer({"POST", url, body, headers, ""}, options);
}

Result<net::HttpResponse> FakeHttpClient::PostForm(const std::string& url,
                                                   const std::vector<net::FormPart>& parts,
                                                   const net::FetchOptions& options) {
  std::string body;
  for (const auto& p : parts) body += p.name + "=" + p.value + "\n";
  return Answer({"POST", url, body, {}, ""}, options);
}

Result<net::HttpResponse> FakeHttpClient::Send(const net::HttpRequest& request,
                                               const net::FetchOptions& options) {
  return Answer({request.method, request.url, request.body, request.headers, request.aws_sigv4},
                options);
}

}  // namespace imgproc::testing
