// libFuzzer target: the SSRF address policy and URL checks, on text and on raw socket addresses.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "net/address.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  imgproc::net::IsHttpUrl(text);
  const bool public_text = imgproc::net::IsPublicAddress(text);

  // The same verdict for a literal as for the socket address it parses to.
  const std::string copy(text);
  sockaddr_in6 v6{};
  sockaddr_in v4{};
  if (inet_pton(AF_INET6, copy.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    if (imgproc::net::IsPublicAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6) != public_text) {
      __builtin_trap();
    }
  } else if (inet_pton(AF_INET, copy.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    if (imgproc::net::IsPublicAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4) != public_text) {
      __builtin_trap();
    }
  }
  // Raw bytes as an IPv6 address: an IPv4-mapped address must agree with its IPv4 form.
  if (size >= 16) {
    std::memcpy(v6.sin6_addr.s6_addr, data, 16);
    v6.sin6_family = AF_INET6;
    const bool mapped = std::memcmp(data, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    const bool verdict = imgproc::net::IsPublicAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6);
    if (mapped) {
      std::memcpy(&v4.sin_addr, data + 12, 4);
      v4.sin_family = AF_INET;
      if (verdict != imgproc::net::IsPublicAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4)) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
