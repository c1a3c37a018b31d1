#pragma once
// The Fletcher-32 checksum exactly as HDF5's Fletcher32 filter computes it (big-endian 16-bit
// words, both sums kept as end-around-carry folds starting from 0, sum2 in the high half), so that
// chunks written directly with H5Dwrite_chunk verify in any HDF5 reader, and chunks read directly
// are verified without HDF5's slower filter pipeline. The filter appends the value little-endian.
#include <cstddef>
#include <cstdint>
#include <span>

namespace temoe {

uint32_t hdf5_fletcher32(std::span<const std::byte> data);

}  // namespace temoe
