#include "parallel/dispatch_statistics.hpp"

namespace temoe {

void DispatchStatistics::reset(int ranks) {
  *this = DispatchStatistics{};
  bytes_to_rank.assign(static_cast<size_t>(ranks), 0);
  return_bytes_to_rank.assign(static_cast<size_t>(ranks), 0);
}

}  // namespace temoe
