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
  kCommunication,    // an MPI call failed (native/mpi)
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }
  static Status invalid(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
  // A bad argument in the package's one message form (src/validate.ts):
  // "Expected <expected> for <argument> but received <received>". The binding passes the three
  // parts on, so the TypeScript layer raises the same InvalidArgumentError it raises itself.
  static Status invalidArgument(std::string argument, std::string expected, std::string received) {
    Status s(StatusCode::kInvalidArgument,
             "Expected " + expected + " for " + argument + " but received " + received);
    s.argument_ = std::move(argument);
    s.expected_ = std::move(expected);
    s.received_ = std::move(received);
    return s;
  }
  static Status outOfMemory(std::string m) { return Status(StatusCode::kOutOfMemory, std::move(m)); }
  static Status unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
  static Status internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
  static Status communication(std::string m) { return Status(StatusCode::kCommunication, std::move(m)); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The parts of an invalidArgument() status (empty for other statuses).
  const std::string& argument() const { return argument_; }
  const std::string& expected() const { return expected_; }
  const std::string& received() const { return received_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string argument_, expected_, received_;
};

#define SUPCON_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::supcon::Status _st = (expr);          \
    if (!_st.isOk()) return _st;            \
  } while (0)

}  // namespace supcon
