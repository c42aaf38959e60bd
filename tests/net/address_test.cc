#include "net/address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

namespace imgproc::net {
namespace {

TEST(IsPublicAddress, RefusesEveryNonPublicIpv4Class) {
  for (const char* ip : {
           "0.0.0.0",         "0.1.2.3",                            // unspecified / "this network"
           "127.0.0.1",       "127.255.255.254",                    // loopback
           "10.0.0.1",        "172.16.0.1",      "172.31.255.255",  // private
           "192.168.1.1",                                           // private
           "169.254.169.254", "169.254.0.1",                        // link-local, cloud metadata
           "100.64.0.1",      "100.127.255.255",                    // carrier-grade NAT
           "192.0.0.8",       "192.0.2.1",       "198.51.100.7",    // IETF, documentation
           "203.0.113.9",     "198.18.0.1",      "198.19.255.1",    // documentation, benchmarking
           "192.88.99.1",                                           // 6to4 relay
           "224.0.0.1",       "239.255.255.250",                    // multicast
           "240.0.0.1",       "255.255.255.255",                    // reserved, broadcast
       }) {
    EXPECT_FALSE(IsPublicAddress(ip)) << ip;
  }
}

TEST(IsPublicAddress, RefusesEveryNonPublicIpv6ClassAndHiddenIpv4) {
  for (const char* ip : {
           "::",
           "::1",  // unspecified, loopback
           "fc00::1",
           "fd12:3456::1",  // unique local
           "fe80::1",
           "febf::1",
           "fec0::1",  // link-local, site-local
           "ff02::1",
           "ff05::2",      // multicast
           "2001:db8::1",  // documentation
           "100::1",       // discard
           "::ffff:127.0.0.1",
           "::ffff:169.254.169.254",  // IPv4-mapped
           "::ffff:10.0.0.1",
           "::ffff:0.0.0.0",
           "::127.0.0.1",
           "::10.0.0.1",  // IPv4-compatible
           "64:ff9b::a00:1",
           "64:ff9b::7f00:1",     // NAT64 of 10.0.0.1, 127.0.0.1
           "64:ff9b:1::1",        // local-use NAT64
           "64:ff9b::a9fe:a9fe",  // NAT64 of 169.254.169.254
           "2002:7f00:1::",
           "2002:a9fe:a9fe::1",                     // 6to4 of 127.0.0.1, 169.254.169.254
           "2002:a00:1::",                          // 6to4 of 10.0.0.1
           "2001:0:4136:e378:8000:63bf:f5ff:fffe",  // Teredo, client 10.0.0.1 (XOR ffffffff)
           "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  // Teredo of 8.8.8.8: refused all the same
           "2001:2::1",
           "2001:10::1",  // benchmarking, ORCHID
           "3fff::1",     // documentation
           "::ffff:0:10.0.0.1",
           "4000::1",  // outside global unicast 2000::/3
       }) {
    EXPECT_FALSE(IsPublicAddress(ip)) << ip;
  }
}

TEST(IsPublicAddress, AcceptsPublicAddresses) {
  for (const char* ip :
       {"8.8.8.8", "1.1.1.1", "93.184.216.34", "9.255.255.255", "11.0.0.1", "100.63.255.255",
        "100.128.0.1", "172.15.255.255", "172.32.0.1", "169.255.0.1", "198.20.0.1",
        "223.255.255.254", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e", "2001:200::1",
        "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_TRUE(IsPublicAddress(ip)) << ip;
  }
}

TEST(IsPublicAddress, RefusesWhatIsNotAnIpLiteral) {
  for (const char* text : {"", "localhost", "example.com", "127.1", "0x7f000001", "2130706433",
                           "1.2.3.4.5", "[::1]", "::1%lo"}) {
    EXPECT_FALSE(IsPublicAddress(text)) << text;
  }
}

TEST(IsPublicAddress, ChecksSockaddrs) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
  EXPECT_FALSE(IsPublicAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4));
  inet_pton(AF_INET, "8.8.4.4", &v4.sin_addr);
  EXPECT_TRUE(IsPublicAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4));
  EXPECT_FALSE(IsPublicAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4 - 1));  // truncated

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:192.168.0.1", &v6.sin6_addr);
  EXPECT_FALSE(IsPublicAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6));
  inet_pton(AF_INET6, "2606:4700::1", &v6.sin6_addr);
  EXPECT_TRUE(IsPublicAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6));

  sockaddr unix_like{};
  unix_like.sa_family = AF_UNIX;
  EXPECT_FALSE(IsPublicAddress(&unix_like, sizeof unix_like));
  EXPECT_FALSE(IsPublicAddress(nullptr, 0));
}

TEST(IsHttpUrl, AcceptsAbsoluteHttpAndHttpsUrls) {
  for (const char* url :
       {"http://example.com", "https://example.com/a/b.jpg?x=1#f", "HTTP://EXAMPLE.COM/",
        "http://user:pw@host:8080/p", "http://[::1]:80/", "https://127.0.0.1/x"}) {
    EXPECT_TRUE(IsHttpUrl(url)) << url;
  }
}

TEST(IsHttpUrl, RefusesEverythingElse) {
  for (const char* url :
       {"", "example.com", "ftp://example.com/x", "file:///etc/passwd", "gopher://x",
        "javascript:alert(1)", "http://", "http:///path", "https://:80/", "http://[]/",
        "http://exa mple.com/", "http://example.com/\n", "http://a/\x01", "//example.com/x",
        "http:/example.com", "data:image/png;base64,AAAA"}) {
    EXPECT_FALSE(IsHttpUrl(url)) << url;
  }
  EXPECT_FALSE(IsHttpUrl("http://a/" + std::string(9000, 'x')));
}

// Audit finding: FETCH_DENY_HOSTS compared the host as written, so another spelling of a denied
// destination got through. Every spelling of one destination must normalise to one text.
TEST(NormalizeHost, WritesEverySpellingOfOneIpv4AddressOneWay) {
  for (const char* host : {"127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:127.0.0.1",
                           "[::FFFF:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:7f00:0001]",
                           "127.0.0.1.", "127.1", "0x7f.0.0.1", "0177.0.0.1", "2130706433"}) {
    EXPECT_EQ(NormalizeHost(host), "127.0.0.1") << host;
    EXPECT_TRUE(IsIpLiteral(host)) << host;
  }
  EXPECT_EQ(NormalizeHost("[::ffff:169.254.169.254]"), "169.254.169.254");
}

TEST(NormalizeHost, WritesIpv6CanonicallyWithoutBracketsOrZone) {
  EXPECT_EQ(NormalizeHost("[::1]"), "::1");
  EXPECT_EQ(NormalizeHost("0:0:0:0:0:0:0:1"), "::1");
  EXPECT_EQ(NormalizeHost("[2001:DB8:0:0:0:0:0:0001]"), "2001:db8::1");
  EXPECT_EQ(NormalizeHost("[fe80::1%eth0]"), "fe80::1");
  // Only the mapped form is the IPv4 address itself; others that embed one are other addresses.
  EXPECT_EQ(NormalizeHost("64:ff9b::7f00:1"), "64:ff9b::7f00:1");
  EXPECT_TRUE(IsIpLiteral("[::1]"));
}

TEST(NormalizeHost, LowerCasesNamesAndDropsOneTrailingDot) {
  EXPECT_EQ(NormalizeHost("Example.COM"), "example.com");
  EXPECT_EQ(NormalizeHost("example.com."), "example.com");
  EXPECT_EQ(NormalizeHost("LOCALHOST."), "localhost");
  EXPECT_EQ(NormalizeHost("example.com.."), "example.com.");  // not a name DNS resolves anyway
  EXPECT_EQ(NormalizeHost("*.Example.com."), "*.example.com");
  // Names that merely look numeric or hex are names.
  for (const char* name : {"dead.beef", "1e100.net", "cafe", "0x.example", "a.b.c.d"}) {
    EXPECT_EQ(NormalizeHost(name), name);
    EXPECT_FALSE(IsIpLiteral(name)) << name;
  }
  EXPECT_FALSE(IsIpLiteral("example.com"));
  EXPECT_FALSE(IsIpLiteral("*.example.com"));
  EXPECT_FALSE(IsIpLiteral(""));
}

}  // namespace
}  // namespace imgproc::net
