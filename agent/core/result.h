// Result<T>: the value of an operation that can fail in an expected way, or an Error that says
// what was being done (context) and why (errno and/or message).
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace np {

struct Error {
  int err = 0;           // errno, 0 when not a system error
  std::string context;   // what was being done, e.g. "attach tc ingress to ens192"
  std::string detail;    // extra explanation, may be empty

  // "context: detail", or "context: <strerror>" for a bare system error. err also classifies
  // errors for callers (ENOENT: not found, EEXIST: conflict, E2BIG/ENOSPC: full).
  std::string message() const {
    if (!detail.empty()) return context + ": " + detail;
    if (err != 0) return context + ": " + std::strerror(err);
    return context;
  }
};

inline Error sysError(std::string context, int err = errno) { return Error{err, std::move(context), {}}; }
inline Error error(std::string context, std::string detail = {}) {
  return Error{0, std::move(context), std::move(detail)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : e_(std::move(e)) {}

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *e_; }

 private:
  std::optional<Error> e_;
};

using Status = Result<void>;

}  // namespace np

// Returns the error of `expr` from the enclosing function if it failed.
#define NP_TRY(expr)                                 \
  do {                                               \
    auto&& np_try_r_ = (expr);                       \
    if (!np_try_r_.ok()) return np_try_r_.error();   \
  } while (0)
