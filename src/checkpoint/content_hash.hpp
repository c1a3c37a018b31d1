#pragma once
// A fast 64-bit hash of a byte stream, used as the whole-file checksum of a checkpoint: four
// independent multiply-rotate lanes over 32-byte stripes (the construction of xxHash64's inner
// loop), so it runs at memory speed. Not cryptographic: it detects accidental damage.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace temoe {

class ContentHash {
 public:
  ContentHash();
  void update(std::span<const std::byte> bytes);
  uint64_t digest() const;  // of everything passed to update so far; update may continue after it

 private:
  void consume_stripe(const std::byte* stripe);
  uint64_t lanes_[4];
  std::byte pending_[32];
  size_t pending_size_ = 0;
  uint64_t total_ = 0;
};

// Hash of bytes [offset, offset + length) of a file, read in large blocks. Throws Error when the
// file is shorter or cannot be read.
uint64_t hash_file_range(const std::filesystem::path& path, uint64_t offset, uint64_t length);

}  // namespace temoe
