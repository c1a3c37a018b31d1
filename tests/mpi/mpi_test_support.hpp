#pragma once
// Helpers for tests that run on every rank: a verdict all ranks agree on.
#include <gtest/gtest.h>

#include "parallel/communicator.hpp"

namespace temoe::testing {

// True on every rank when `ok` holds on every rank.
inline bool all_ranks(Communicator& communicator, bool ok) {
  double flag = ok ? 0.0 : 1.0;
  communicator.all_reduce_sum(std::span<double>(&flag, 1));
  return flag == 0.0;
}

}  // namespace temoe::testing
