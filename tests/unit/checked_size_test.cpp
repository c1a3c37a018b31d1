// The checked multiply every reader sizes its allocations with (src/core/checked_size.hpp): exact
// products below the int64 limit, refusals (naming what, the shape and the limit) at and past it,
// negative extents, and element_count / Tensor using it.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "src/core/checked_size.hpp"
#include "src/core/error.hpp"
#include "src/tensor/tensor.hpp"
#include "tests/support/error_message.hpp"

namespace temoe {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();  // 2^63 - 1 = 7^2 * 73 * 127 * 337 * 92737 * 649657

using testing::error_of;

int64_t product(const std::vector<int64_t>& extents) { return checked_product(extents, "test.bin"); }

TEST(CheckedSize, ProductOfOrdinaryShapes) {
  EXPECT_EQ(product({}), 1);
  EXPECT_EQ(product({7}), 7);
  EXPECT_EQ(product({2, 3, 4}), 24);
  EXPECT_EQ(product({5, 0, 3}), 0);
  EXPECT_EQ(product({0}), 0);
}

TEST(CheckedSize, ProductAtTheInt64BoundaryIsExact) {
  EXPECT_EQ(product({kMax}), kMax);
  EXPECT_EQ(product({1, kMax, 1}), kMax);
  EXPECT_EQ(product({7, 7, 73, 127, 337, 92737, 649657}), kMax);
  EXPECT_EQ(product({int64_t{1} << 62, 1}), int64_t{1} << 62);
  EXPECT_EQ(product({(int64_t{1} << 62) - 1, 2}), kMax - 1);
  // floor(sqrt(2^63 - 1)) = 3037000499: its square fits, the next one does not.
  EXPECT_EQ(product({3037000499, 3037000499}), int64_t{9223372030926249001});
}

TEST(CheckedSize, ProductOnePastTheBoundaryIsRefused) {
  for (const std::vector<int64_t>& extents : std::vector<std::vector<int64_t>>{
           {int64_t{1} << 62, 2},                // exactly 2^63
           {7, 7, 73, 127, 337, 92737, 649657, 2},  // 2 * (2^63 - 1)
           {3037000500, 3037000500},
           {kMax, kMax},
           {4294967296, 4294967296},  // 2^64: wraps to 0 in unchecked arithmetic
       }) {
    const std::string message = error_of([&] { product(extents); });
    EXPECT_NE(message.find("test.bin: shape " + extents_string(extents)), std::string::npos) << message;
    EXPECT_NE(message.find("at most 9223372036854775807"), std::string::npos) << message;
  }
}

TEST(CheckedSize, ZeroExtentDoesNotHideAnOverflowingRest) {
  // The product is 0, but a stride over the other two axes would overflow.
  const std::string message = error_of([] { product({0, int64_t{1} << 32, int64_t{1} << 32}); });
  EXPECT_NE(message.find("shape [0, 4294967296, 4294967296]"), std::string::npos) << message;
  EXPECT_EQ(product({0, int64_t{1} << 31, int64_t{1} << 31}), 0);
}

TEST(CheckedSize, NegativeExtentIsRefused) {
  const std::string message = error_of([] { product({3, -1, 2}); });
  EXPECT_NE(message.find("test.bin: shape [3, -1, 2] has a negative extent -1 on axis 1"), std::string::npos) << message;
  EXPECT_NE(error_of([] { product({kMax, -1}); }), "");
}

TEST(CheckedSize, BytesAtTheBoundaryAreExactAndOnePastIsRefused) {
  EXPECT_EQ(checked_bytes(kMax / 4, 4, "x"), kMax - 3);
  EXPECT_EQ(checked_bytes(kMax, 1, "x"), kMax);
  EXPECT_EQ(checked_bytes(0, 8, "x"), 0);
  std::string message = error_of([] { checked_bytes(kMax / 4 + 1, 4, "weights.bin"); });
  EXPECT_NE(message.find("weights.bin: 2305843009213693952 elements of 4 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("at most 2305843009213693951 elements"), std::string::npos) << message;
  EXPECT_NE(error_of([] { checked_bytes(-1, 4, "x"); }), "");
  EXPECT_NE(error_of([] { checked_bytes(1, 0, "x"); }), "");

  const std::vector<int64_t> fits = {(int64_t{1} << 61) - 1};
  EXPECT_EQ(checked_bytes(fits, 4, "x"), kMax - 3);  // (2^61 - 1) * 4 = 2^63 - 4
  const std::vector<int64_t> wraps = {int64_t{1} << 62};  // 2^62 floats = 2^64 bytes: wraps to 0 unchecked
  message = error_of([&] { checked_bytes(wraps, 4, "model.safetensors: tensor 'w'"); });
  EXPECT_NE(message.find("model.safetensors: tensor 'w': shape [4611686018427387904] of 4-byte elements"),
            std::string::npos)
      << message;
}

TEST(CheckedSize, ElementCountAndTensorUseTheCheck) {
  EXPECT_EQ(element_count({2, 3}), 6);
  std::string message = error_of([] { element_count({int64_t{1} << 32, int64_t{1} << 32}); });
  EXPECT_NE(message.find("shape [4294967296, 4294967296]"), std::string::npos) << message;
  message = error_of([] { element_count({2, -3}); });
  EXPECT_NE(message.find("negative extent"), std::string::npos) << message;
  // 2^62 floats: the element count fits int64, the byte count does not; refused before allocating.
  message = error_of([] { Tensor tensor({int64_t{1} << 62}); });
  EXPECT_NE(message.find("tensor: shape [4611686018427387904] of 4-byte elements"), std::string::npos) << message;
}

}  // namespace
}  // namespace temoe
