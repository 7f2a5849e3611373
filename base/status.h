// Status helpers shared by every package. Abseil 20220623 has no status_macros.h, so the two macros
// that every StatusOr-returning function needs are defined here, once.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MOE_CONCAT_INNER(a, b) a##b
#define MOE_CONCAT(a, b) MOE_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status moe_status_ = (expr);              \
    if (!moe_status_.ok()) return moe_status_;        \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr());` unwraps or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL(MOE_CONCAT(moe_statusor_, __LINE__), lhs, expr)
#define MOE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
