#pragma once
#include <cstdint>

namespace temoe::launch {

// Peak resident memory of this process so far (VmHWM), in bytes; 0 where /proc is unavailable.
int64_t peak_resident_bytes();

}  // namespace temoe::launch
