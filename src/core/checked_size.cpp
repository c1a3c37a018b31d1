#include "src/core/checked_size.hpp"

#include <limits>
#include <sstream>

#include "src/core/error.hpp"

namespace temoe {

namespace {
constexpr int64_t kMaximum = std::numeric_limits<int64_t>::max();
}  // namespace

std::string extents_string(std::span<const int64_t> extents) {
  std::ostringstream stream;
  stream << "[";
  for (size_t i = 0; i < extents.size(); ++i) stream << (i ? ", " : "") << extents[i];
  stream << "]";
  return stream.str();
}

bool product_fits(std::span<const int64_t> extents, int64_t& product) {
  int64_t nonzero_product = 1;
  bool has_zero = false;
  for (const int64_t extent : extents) {
    if (extent < 0) return false;
    if (extent == 0) {
      has_zero = true;
    } else if (__builtin_mul_overflow(nonzero_product, extent, &nonzero_product)) {
      return false;
    }
  }
  product = has_zero ? 0 : nonzero_product;
  return true;
}

int64_t checked_product(std::span<const int64_t> extents, const std::string& what) {
  int64_t product = 0;
  if (product_fits(extents, product)) return product;
  for (size_t axis = 0; axis < extents.size(); ++axis) {
    if (extents[axis] < 0) {
      TEMOE_FAIL(what << ": shape " << extents_string(extents) << " has a negative extent " << extents[axis]
                      << " on axis " << axis << "; expected extents >= 0");
    }
  }
  TEMOE_FAIL(what << ": shape " << extents_string(extents) << " has more elements than a 64-bit count holds; "
                  << "expected a product of the non-zero extents of at most " << kMaximum);
}

int64_t checked_bytes(int64_t count, int64_t element_bytes, const std::string& what) {
  if (count < 0 || element_bytes < 1) {
    TEMOE_FAIL(what << ": " << count << " elements of " << element_bytes
                    << " bytes; expected a count >= 0 and an element size >= 1");
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(count, element_bytes, &bytes)) {
    TEMOE_FAIL(what << ": " << count << " elements of " << element_bytes << " bytes exceed a 64-bit byte count; "
                    << "expected at most " << kMaximum / element_bytes << " elements");
  }
  return bytes;
}

int64_t checked_bytes(std::span<const int64_t> extents, int64_t element_bytes, const std::string& what) {
  const int64_t count = checked_product(extents, what);
  int64_t bytes = 0;
  if (element_bytes < 1 || __builtin_mul_overflow(count, element_bytes, &bytes)) {
    TEMOE_FAIL(what << ": shape " << extents_string(extents) << " of " << element_bytes << "-byte elements needs more "
                    << "bytes than a 64-bit size holds; expected at most " << (element_bytes < 1 ? 0 : kMaximum / element_bytes)
                    << " elements");
  }
  return bytes;
}

}  // namespace temoe
