// Deciding which destinations imgproc may contact on behalf of a user (SSRF defence), and the
// small URL checks that come before any connection.
#ifndef IMGPROC_NET_ADDRESS_H_
#define IMGPROC_NET_ADDRESS_H_

#include <sys/socket.h>

#include <string>
#include <string_view>

namespace imgproc::net {

// True when the address is a public unicast destination. False for loopback, private (RFC 1918,
// fc00::/7), link-local (169.254/16 incl. cloud metadata, fe80::/10), CGNAT 100.64/10,
// unspecified (0.0.0.0/8, ::), multicast, broadcast, reserved/documentation ranges, and IPv4
// embedded in IPv6 (mapped, compatible, 6to4, NAT64, Teredo) whose IPv4 part is not public.
bool IsPublicAddress(const sockaddr* addr, socklen_t len);

// Same, for a textual IP address. Returns false for anything that is not an IP literal.
bool IsPublicAddress(std::string_view ip);

// True when `url` is an absolute http:// or https:// URL with a non-empty host (no spaces,
// no control characters). Does not resolve anything.
bool IsHttpUrl(std::string_view url);

}  // namespace imgproc::net

#endif  // IMGPROC_NET_ADDRESS_H_
