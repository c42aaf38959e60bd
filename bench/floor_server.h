// The least any server can do for the status benchmark (e): send a fixed response.
#ifndef IMGPROC_BENCH_FLOOR_SERVER_H_
#define IMGPROC_BENCH_FLOOR_SERVER_H_

#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace imgproc::bench {

// Answers every request it reads (each up to its blank line, nothing parsed) with the same bytes,
// one blocking thread per connection. Loaded with the response imgproc gave, in the same minutes
// as imgproc, it shows the part of the status latency that is this machine's (the loopback, the
// scheduler, the load generator) rather than imgproc's.
class FloorServer {
 public:
  explicit FloorServer(std::string response) : response_(std::move(response)) {}
  ~FloorServer();  // closes the listener and every connection, joins the threads

  // Listens on 127.0.0.1, any free port; false if it cannot.
  bool Start();
  int port() const { return port_; }

 private:
  void Accept();
  void Serve(int fd);

  const std::string response_;
  int listener_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> connections_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

// GET `path` from 127.0.0.1:`port` (with `header` unless empty) and return the whole response,
// head and body, as sent; nullopt unless it is framed by Content-Length.
std::optional<std::string> FetchRawResponse(int port, const std::string& path,
                                            const std::string& header);

}  // namespace imgproc::bench

#endif  // IMGPROC_BENCH_FLOOR_SERVER_H_
