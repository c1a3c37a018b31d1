// SHA-256 against the FIPS 180-4 / NIST example vectors, and split updates against one update.
#include "src/core/sha256.hpp"

#include <gtest/gtest.h>

#include <string>

namespace temoe {
namespace {

std::string sha256_of(const std::string& text) {
  Sha256 hash;
  hash.update(std::span<const char>(text));
  return hash.hex_digest();
}

TEST(Sha256, MatchesTheNistExamples) {
  EXPECT_EQ(sha256_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_of(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, SplitUpdatesEqualOneUpdateAndTheDigestDoesNotEndTheStream) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text.push_back(static_cast<char>(i * 7 + 3));
  const std::string whole = sha256_of(text);
  for (const size_t piece : {1u, 55u, 56u, 63u, 64u, 65u, 200u}) {
    Sha256 hash;
    for (size_t begin = 0; begin < text.size(); begin += piece) {
      hash.update(std::span<const char>(text.data() + begin, std::min(piece, text.size() - begin)));
      if (begin == 0) {
        EXPECT_EQ(hash.hex_digest(), sha256_of(text.substr(0, std::min(piece, text.size()))));
      }
    }
    EXPECT_EQ(hash.hex_digest(), whole) << "pieces of " << piece << " bytes";
  }
}

}  // namespace
}  // namespace temoe
