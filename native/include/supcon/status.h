// Result type of every core entry point. The core never throws across its API and never
// aborts on bad input: callers (the N-API binding, the C++ tests) turn a Status into an error.
#pragma once
#include <string>
#include <utility>

namespace supcon {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // a caller error: shape, range, NaN in the data, ...
  kOutOfMemory,      // host or device allocation failed
  kUnavailable,      // the requested device/path is not compiled or not present
  kInternal,         // a bug or a CUDA launch failure
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }
  static Status invalid(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
  static Status outOfMemory(std::string m) { return Status(StatusCode::kOutOfMemory, std::move(m)); }
  static Status unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
  static Status internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

#define SUPCON_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::supcon::Status _st = (expr);          \
    if (!_st.isOk()) return _st;            \
  } while (0)

}  // namespace supcon
