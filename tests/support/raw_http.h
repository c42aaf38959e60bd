// HTTP spoken by hand over a socket, for clients no HTTP library would be (malformed framing,
// slow senders, pipelined requests).
#ifndef IMGPROC_TESTS_SUPPORT_RAW_HTTP_H_
#define IMGPROC_TESTS_SUPPORT_RAW_HTTP_H_

#include <string>
#include <string_view>

namespace imgproc::testing {

// A connection to 127.0.0.1:`port`, from the loopback address `source` (any 127.x.y.z: a second
// client address on the same machine); reads time out after 10 s. -1 on failure.
int Connect(int port, const char* source = "127.0.0.1");

// Sends all of `data`; false when the peer stopped taking it (closed, or 10 s without progress).
bool SendAll(int fd, std::string_view data);

// What the server answered on `fd` until it closed the connection (or 10 s passed).
std::string ReadAll(int fd);

// One HTTP/1.1 response read off `fd`: its head, and as many body bytes as its Content-Length
// says (none after a HEAD). `buffered` keeps what was read past it.
struct RawResponse {
  std::string head;
  std::string body;
};
RawResponse ReadResponse(int fd, std::string& buffered, bool head_only = false);

// How many responses (status lines) `answer` holds.
int CountResponses(const std::string& answer);

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_RAW_HTTP_H_
