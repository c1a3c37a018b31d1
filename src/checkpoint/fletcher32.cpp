#include "src/checkpoint/fletcher32.hpp"

#include <algorithm>

namespace temoe {

// HDF5 folds each sum (x -> (x & 0xffff) + (x >> 16)) at points of its choosing. Folding keeps a
// positive value positive and preserves it modulo 65535, and HDF5's final folds leave both sums in
// [0, 0xffff]. So each sum is 0 exactly when every word is 0 and otherwise the representative of
// its residue in [1, 65535], whatever the folding schedule: we may sum in any order we like. We
// take blocks of 256 words, where sum(w) and sum(j * w) fit in 32 bits and vectorise, and use
//   sum2 += n * sum1_before + n * sum(w) - sum(j * w)     (word j of n counts n - j times).
uint32_t hdf5_fletcher32(std::span<const std::byte> data) {
  constexpr size_t kBlockWords = 256;
  constexpr uint64_t kModulus = 65535;
  const size_t words = data.size() / 2;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  uint64_t sum1 = 0, sum2 = 0;
  bool nonzero = false;
  for (size_t start = 0; start < words; start += kBlockWords) {
    const size_t count = std::min(kBlockWords, words - start);
    const unsigned char* block = bytes + 2 * start;
    uint32_t plain = 0, weighted = 0;
    for (size_t j = 0; j < count; ++j) {
      const uint32_t word = (static_cast<uint32_t>(block[2 * j]) << 8) | block[2 * j + 1];  // big-endian words
      plain += word;
      weighted += static_cast<uint32_t>(j) * word;
    }
    nonzero = nonzero || plain != 0;
    sum2 = (sum2 + count * sum1 + count * static_cast<uint64_t>(plain) - weighted) % kModulus;
    sum1 = (sum1 + plain) % kModulus;
  }
  if (data.size() % 2 != 0) {
    const uint64_t word = static_cast<uint64_t>(bytes[data.size() - 1]) << 8;
    nonzero = nonzero || word != 0;
    sum1 = (sum1 + word) % kModulus;
    sum2 = (sum2 + sum1) % kModulus;
  }
  if (!nonzero) return 0;
  if (sum1 == 0) sum1 = kModulus;
  if (sum2 == 0) sum2 = kModulus;
  return static_cast<uint32_t>((sum2 << 16) | sum1);
}

}  // namespace temoe
