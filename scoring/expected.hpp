#pragma once
// A small value-or-error type for expected failures in the scoring library
// (bad query input, unknown ids, storage errors). STYLE.md: failures on the
// request path are values, not exceptions; this keeps scoring/ free of Boost.
//
// Thread-safety: a plain value type; the usual rules for std::variant apply.

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace arbiter::scoring {

// What kind of failure, so that the API layer can choose a status code
// without parsing messages.
enum class ErrorCode {
  kInvalidArgument,  // caller's input is wrong (400)
  kNotFound,         // unknown id, or another project's id (404)
  kConflict,         // the target exists but is in the wrong state for the call (409)
  kUnavailable,      // the log is closed / shutting down (503)
  kStorage,          // RocksDB failed or returned bytes we cannot decode (500)
};

struct Error {
  ErrorCode code = ErrorCode::kStorage;
  std::string message;
};

inline Error invalid_argument(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}
inline Error not_found(std::string message) {
  return Error{ErrorCode::kNotFound, std::move(message)};
}
inline Error conflict(std::string message) {
  return Error{ErrorCode::kConflict, std::move(message)};
}
inline Error storage_error(std::string message) {
  return Error{ErrorCode::kStorage, std::move(message)};
}
inline Error unavailable(std::string message) {
  return Error{ErrorCode::kUnavailable, std::move(message)};
}

// The HTTP status an API handler should answer with for an error code.
constexpr int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kStorage:
      return 500;
  }
  return 500;
}

template <class T>
class [[nodiscard]] Expected {
 public:
  static_assert(!std::is_same_v<std::decay_t<T>, Error>, "Expected<Error> is ambiguous");

  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // Precondition: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !ok().
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Success carries nothing.
template <>
class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace arbiter::scoring
