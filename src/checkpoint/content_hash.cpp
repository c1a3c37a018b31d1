#include "src/checkpoint/content_hash.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <vector>

#include "src/core/counter_random.hpp"
#include "src/core/error.hpp"

namespace temoe {

namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4Full;

uint64_t load_word(const std::byte* bytes) {
  uint64_t word;
  std::memcpy(&word, bytes, sizeof(word));
  if constexpr (std::endian::native == std::endian::big) word = __builtin_bswap64(word);
  return word;
}

uint64_t round_lane(uint64_t lane, uint64_t word) { return std::rotl(lane + word * kPrime2, 31) * kPrime1; }

}  // namespace

ContentHash::ContentHash() : lanes_{kPrime1 + kPrime2, kPrime2, 0, 0 - kPrime1} {}

void ContentHash::consume_stripe(const std::byte* stripe) {
  for (int lane = 0; lane < 4; ++lane) lanes_[lane] = round_lane(lanes_[lane], load_word(stripe + 8 * lane));
}

void ContentHash::update(std::span<const std::byte> bytes) {
  total_ += bytes.size();
  size_t position = 0;
  if (pending_size_ > 0) {
    const size_t take = std::min(bytes.size(), sizeof(pending_) - pending_size_);
    std::memcpy(pending_ + pending_size_, bytes.data(), take);
    pending_size_ += take;
    position = take;
    if (pending_size_ < sizeof(pending_)) return;
    consume_stripe(pending_);
    pending_size_ = 0;
  }
  for (; position + 32 <= bytes.size(); position += 32) consume_stripe(bytes.data() + position);
  std::memcpy(pending_, bytes.data() + position, bytes.size() - position);
  pending_size_ = bytes.size() - position;
}

uint64_t ContentHash::digest() const {
  uint64_t hash = std::rotl(lanes_[0], 1) + std::rotl(lanes_[1], 7) + std::rotl(lanes_[2], 12) + std::rotl(lanes_[3], 18);
  for (uint64_t lane : lanes_) hash = (hash ^ round_lane(0, lane)) * kPrime1 + kPrime2;
  hash += total_;
  size_t position = 0;
  for (; position + 8 <= pending_size_; position += 8) hash = std::rotl(hash ^ round_lane(0, load_word(pending_ + position)), 27) * kPrime1;
  for (; position < pending_size_; ++position) {
    hash = std::rotl(hash ^ (static_cast<uint64_t>(pending_[position]) * kPrime1), 11) * kPrime2;
  }
  return mix64(hash);
}

uint64_t hash_file_range(const std::filesystem::path& path, uint64_t offset, uint64_t length) {
  const int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) TEMOE_FAIL(path.string() << ": cannot open: " << std::strerror(errno));
  ::posix_fadvise(descriptor, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> block(static_cast<size_t>(std::clamp<uint64_t>(length, 1, uint64_t{8} << 20)));
  ContentHash hash;
  uint64_t done = 0;
  while (done < length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(block.size(), length - done));
    const ssize_t got = ::pread(descriptor, block.data(), want, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const int saved = errno;
      ::close(descriptor);
      TEMOE_FAIL(path.string() << ": " << (got == 0 ? "ends early" : std::strerror(saved)) << " at byte " << offset + done);
    }
    hash.update(std::span<const std::byte>(block.data(), static_cast<size_t>(got)));
    done += static_cast<uint64_t>(got);
  }
  ::close(descriptor);
  return hash.digest();
}

}  // namespace temoe
