#pragma once
// Element counts and byte sizes computed from extents that a file claims (a .npy shape, a
// safetensors header, an HDF5 dataspace, config.json). A product that wraps around int64 would
// pass every later size check with a tiny number and leave kernels to overrun a tiny buffer, so
// every reader multiplies through these functions, which refuse instead of wrapping.
#include <cstdint>
#include <span>
#include <string>

namespace temoe {

// The product of `extents` (1 for none). Throws temoe::Error, naming `what` (the file or tensor),
// the shape and the limit, when an extent is negative or when the product of the non-zero extents
// exceeds INT64_MAX. Zero extents are skipped in the overflow check on purpose: a shape such as
// [0, 2^40, 2^40] is refused too, so that no partial product a kernel or a stride computation
// forms over a subset of the axes can overflow either.
int64_t checked_product(std::span<const int64_t> extents, const std::string& what);

// The same product without the message: true and `product` set, or false (a negative extent or an
// overflow, as above). For hot paths (Tensor::numel), which format a message only on failure.
bool product_fits(std::span<const int64_t> extents, int64_t& product);

// count * element_bytes. Throws temoe::Error naming `what`, the count and the element size when
// either is negative (or element_bytes is 0) or when the product exceeds INT64_MAX.
int64_t checked_bytes(int64_t count, int64_t element_bytes, const std::string& what);

// checked_bytes(checked_product(extents, what), element_bytes, what), with the shape in the message.
int64_t checked_bytes(std::span<const int64_t> extents, int64_t element_bytes, const std::string& what);

// "[a, b, c]", for messages.
std::string extents_string(std::span<const int64_t> extents);

}  // namespace temoe
