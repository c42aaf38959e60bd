// multipart/form-data bodies (RFC 7578), as browsers and curl send them: the upload's parts.
//
// Boost.Beast, which parses the HTTP framing, has no multipart parser, and cpp-httplib's is in its
// internal namespace; this one works on the whole body, which the transport has already bounded.
#ifndef IMGPROC_API_MULTIPART_H_
#define IMGPROC_API_MULTIPART_H_

#include <map>
#include <string>
#include <string_view>

#include "common/result.h"

namespace imgproc::api {

// One part of a multipart/form-data body.
struct FormFile {
  std::string filename;
  std::string content_type;
  std::string content;
};

// The boundary named by a Content-Type header value, when it is multipart/form-data with one;
// empty otherwise.
std::string MultipartBoundary(std::string_view content_type);

// The parts of `body` by name; the first of several parts with one name wins. InvalidArgument,
// saying what is wrong, when the body is not multipart/form-data with that boundary.
Result<std::map<std::string, FormFile>> ParseMultipart(std::string_view boundary,
                                                       std::string_view body);

}  // namespace imgproc::api

#endif  // IMGPROC_API_MULTIPART_H_
