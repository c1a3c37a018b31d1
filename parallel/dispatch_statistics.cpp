#include "parallel/dispatch_statistics.hpp"

namespace temoe {

void DispatchStatistics::reset(int ranks, bool record) {
  *this = DispatchStatistics{};
  record_calls = record;
  bytes_to_rank.assign(static_cast<size_t>(ranks), 0);
  return_bytes_to_rank.assign(static_cast<size_t>(ranks), 0);
}

}  // namespace temoe
