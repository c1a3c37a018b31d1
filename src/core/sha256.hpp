#pragma once
// SHA-256 (FIPS 180-4) of a byte stream: the fingerprint recorded beside data built from files
// that are not committed (the byte corpus of launch/make_corpus.sh), so that `sha256sum` on any
// machine can tell whether it holds the same inputs.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace temoe {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::byte> bytes);
  void update(std::span<const char> bytes) { update(std::as_bytes(bytes)); }
  // The digest of everything passed to update so far, as 64 lowercase hex digits (as sha256sum
  // prints it); update may continue after it.
  std::string hex_digest() const;

 private:
  void compress(const uint8_t* block);  // one 64-byte block
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> pending_{};
  size_t pending_size_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace temoe
