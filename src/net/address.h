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

// The one spelling of a host under which the host allow and deny lists compare it, so that no
// other way of writing the same destination gets past them: lower case; "[...]" brackets and an
// IPv6 zone id dropped; an IP literal printed canonically (IPv4 also from the forms curl's URL
// parser accepts: 127.1, 0x7f.0.0.1, 2130706433), an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// as the IPv4 address it reaches; and one trailing dot dropped ("example.com." is the host
// "example.com"). A "*.example.com" pattern keeps its star.
std::string NormalizeHost(std::string_view host);

// True when `host`, read as NormalizeHost reads it, is an IP address rather than a name.
bool IsIpLiteral(std::string_view host);

// True when `url` is an absolute http:// or https:// URL with a non-empty host (no spaces,
// no control characters). Does not resolve anything.
bool IsHttpUrl(std::string_view url);

}  // namespace imgproc::net

#endif  // IMGPROC_NET_ADDRESS_H_
