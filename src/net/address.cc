#include "net/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>

namespace imgproc::net {
namespace {

struct V4Range {
  uint32_t base;
  int prefix;
};

// Every IPv4 range that is not a public unicast destination (IANA special-purpose registry).
constexpr std::array<V4Range, 15> kNonPublicV4 = {{
    {0x00000000, 8},   // 0.0.0.0/8 "this network", incl. the unspecified address
    {0x0A000000, 8},   // 10/8 private
    {0x64400000, 10},  // 100.64/10 carrier-grade NAT
    {0x7F000000, 8},   // 127/8 loopback
    {0xA9FE0000, 16},  // 169.254/16 link-local, incl. cloud metadata 169.254.169.254
    {0xAC100000, 12},  // 172.16/12 private
    {0xC0000000, 24},  // 192.0.0/24 IETF protocol assignments
    {0xC0000200, 24},  // 192.0.2/24 documentation
    {0xC0586300, 24},  // 192.88.99/24 6to4 relay anycast
    {0xC0A80000, 16},  // 192.168/16 private
    {0xC6120000, 15},  // 198.18/15 benchmarking
    {0xC6336400, 24},  // 198.51.100/24 documentation
    {0xCB007100, 24},  // 203.0.113/24 documentation
    {0xE0000000, 4},   // 224/4 multicast
    {0xF0000000, 4},   // 240/4 reserved, incl. broadcast 255.255.255.255
}};

bool IsPublicV4(uint32_t ip) {
  for (const auto& r : kNonPublicV4) {
    const uint32_t mask = ~uint32_t{0} << (32 - r.prefix);
    if ((ip & mask) == r.base) return false;
  }
  return true;
}

uint32_t V4At(const uint8_t* b) {
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
}

bool HasPrefix(const uint8_t* a, std::initializer_list<uint8_t> prefix, int bits) {
  assert(static_cast<int>(prefix.size()) * 8 >= bits);
  const uint8_t* p = prefix.begin();
  for (int i = 0; i < bits / 8; ++i) {
    if (a[i] != p[i]) return false;
  }
  if (bits % 8 != 0) {
    const uint8_t mask = static_cast<uint8_t>(0xFF << (8 - bits % 8));
    if ((a[bits / 8] & mask) != (p[bits / 8] & mask)) return false;
  }
  return true;
}

bool IsPublicV6(const uint8_t* a) {
  // IPv4 embedded in IPv6 is judged by that IPv4 address: ::ffff:0:0/96 mapped, 64:ff9b::/96
  // NAT64 well-known prefix, 2002::/16 6to4 (IPv4 in bits 16..47).
  if (HasPrefix(a, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, 96)) return IsPublicV4(V4At(a + 12));
  if (HasPrefix(a, {0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0}, 96)) {
    return IsPublicV4(V4At(a + 12));
  }
  if (HasPrefix(a, {0x20, 0x02}, 16)) return IsPublicV4(V4At(a + 2));
  // Only global unicast 2000::/3 is routable on the internet. This refuses :: and ::1, the
  // deprecated IPv4-compatible ::/96, 100::/64 discard, 64:ff9b:1::/48 local-use NAT64,
  // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local and ff00::/8 multicast.
  if ((a[0] & 0xE0) != 0x20) return false;
  // 2001::/23 IETF protocol assignments: Teredo 2001::/32 (refused outright, it tunnels to an
  // address we cannot vet), benchmarking, ORCHID. Public allocations start at 2001:200::.
  if (HasPrefix(a, {0x20, 0x01, 0x00}, 23)) return false;
  if (HasPrefix(a, {0x20, 0x01, 0x0D, 0xB8}, 32)) return false;  // 2001:db8::/32 documentation
  if (HasPrefix(a, {0x3F, 0xFF, 0x00}, 20)) return false;        // 3fff::/20 documentation
  return true;
}

// The canonical text of an IP literal (brackets already removed, lower case); nullopt for a name.
std::optional<std::string> CanonicalIp(const std::string& text) {
  char buf[INET6_ADDRSTRLEN] = "";
  // IPv4 in every form inet_aton takes (a.b.c.d, a.b.c, a.b, a; decimal, octal or hex parts),
  // which are the forms curl's URL parser also reads as IPv4 and connects to. Only digits, hex
  // letters, 'x' and dots, so no name (nor inet_aton's tolerance of trailing blanks) gets in.
  if (!text.empty() && text.find_first_not_of("0123456789abcdefx.") == std::string::npos) {
    in_addr v4{};
    if (inet_aton(text.c_str(), &v4) != 0 && inet_ntop(AF_INET, &v4, buf, sizeof buf)) return buf;
  }
  // An IPv6 zone id ("fe80::1%eth0") names the local interface, not another destination.
  const std::string v6_text = text.substr(0, text.find('%'));
  in6_addr v6{};
  if (inet_pton(AF_INET6, v6_text.c_str(), &v6) != 1) return std::nullopt;
  if (HasPrefix(v6.s6_addr, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, 96)) {
    // ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket: the same destination, so the same name.
    in_addr v4{};
    std::memcpy(&v4, v6.s6_addr + 12, sizeof v4);
    if (inet_ntop(AF_INET, &v4, buf, sizeof buf)) return buf;
    return std::nullopt;
  }
  if (inet_ntop(AF_INET6, &v6, buf, sizeof buf)) return buf;
  return std::nullopt;
}

}  // namespace

std::string NormalizeHost(std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  // The root label: "example.com." and "example.com" are one host to DNS, and to curl.
  if (h.size() > 1 && h.back() == '.') h.pop_back();
  if (auto ip = CanonicalIp(h)) return std::move(*ip);
  return h;
}

bool IsIpLiteral(std::string_view host) { return CanonicalIp(NormalizeHost(host)).has_value(); }

bool IsPublicAddress(const sockaddr* addr, socklen_t len) {
  if (addr == nullptr) return false;
  if (addr->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return IsPublicV4(ntohl(in->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return IsPublicV6(in6->sin6_addr.s6_addr);
  }
  return false;
}

bool IsPublicAddress(std::string_view ip) {
  const std::string text(ip);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return IsPublicV4(ntohl(v4.s_addr));
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IsPublicV6(v6.s6_addr);
  return false;
}

bool IsHttpUrl(std::string_view url) {
  if (url.size() > 8192) return false;
  for (unsigned char c : url) {
    if (c <= 0x20 || c == 0x7F) return false;  // no spaces or control characters anywhere
  }
  std::string lower(url.substr(0, 8));
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t host_start;
  if (lower.rfind("http://", 0) == 0) {
    host_start = 7;
  } else if (lower.rfind("https://", 0) == 0) {
    host_start = 8;
  } else {
    return false;
  }
  const std::string_view rest = url.substr(host_start);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  // The host is what remains without a port; "[v6]" literals keep their brackets.
  std::string_view host = authority;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return close != std::string_view::npos && close > 1;
  }
  host = host.substr(0, host.find(':'));
  return !host.empty();
}

}  // namespace imgproc::net
