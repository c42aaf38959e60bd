// Status and Result<T>: errors as values at module boundaries.
//
// A Status is either OK or carries a code and a human-readable message. Result<T> holds either a
// value or a non-OK Status. Neither throws; callers check ok() before using value(). Both are
// [[nodiscard]]: an error cannot be dropped by accident (write `(void)` where dropping one is the
// intent, with the reason). Reading the value of an error aborts, in every build, with the error's
// message: it is a bug, and undefined behaviour would hide where.
#ifndef IMGPROC_COMMON_RESULT_H_
#define IMGPROC_COMMON_RESULT_H_

#include <cassert>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

namespace imgproc {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong; retrying will not help
  kNotFound,
  kPermanent,          // the remote side failed in a way that retrying will not fix
  kTransient,          // may succeed if retried later (timeouts, 5xx, 429, rate limits)
  kResourceExhausted,  // the caller is over a quota of ours (HTTP 429)
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool transient() const { return code_ == StatusCode::kTransient; }

  // For transient errors: how long the remote side asked us to wait (its Retry-After), if it did.
  std::chrono::milliseconds retry_after() const { return retry_after_; }
  Status& set_retry_after(std::chrono::milliseconds delay) {
    retry_after_ = delay;
    return *this;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::chrono::milliseconds retry_after_{0};
};

// Parses an HTTP Retry-After value given in seconds; 0 when absent or not a number of seconds
// (the HTTP-date form is rare for rate limits and treated as absent).
std::chrono::milliseconds RetryAfter(const std::string& header_value);

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Permanent(std::string m) { return {StatusCode::kPermanent, std::move(m)}; }
inline Status Transient(std::string m) { return {StatusCode::kTransient, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}

// Aborts the process with `status`'s message: the value of an error Result was read.
[[noreturn]] void DieReadingValueOfError(const Status& status);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() { return Checked(); }
  const T& value() const { return Checked(); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &Checked(); }
  T& operator*() { return Checked(); }
  const T& operator*() const { return Checked(); }

 private:
  T& Checked() {
    if (!value_) DieReadingValueOfError(status_);
    return *value_;
  }
  const T& Checked() const {
    if (!value_) DieReadingValueOfError(status_);
    return *value_;
  }

  std::optional<T> value_;
  Status status_;
};

}  // namespace imgproc

#endif  // IMGPROC_COMMON_RESULT_H_
