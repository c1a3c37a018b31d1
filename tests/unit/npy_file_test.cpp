// NumPy .npy reading and writing: float32 and int32 arrays survive a write/read round trip bit for
// bit, int64 token files (what numpy writes by default) are read, and broken files are refused with
// a message that names the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/support/error_message.hpp"
#include "tests/support/npy_bytes.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;

class NpyFile : public testing::ScratchDirectoryTest {
 protected:
  fs::path path(const std::string& name) const { return directory_ / name; }

};

std::string read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

using testing::npy_bytes;

using testing::error_of;

using testing::expect_contains;

// ---------------------------------------------------------------------------------------------

TEST_F(NpyFile, Float32RoundTripIsBitExact) {
  const float infinity = std::numeric_limits<float>::infinity();
  const std::vector<float> specials = {0.0f, -0.0f, 1.5f, -3.25e-38f, 1e-45f, infinity, -infinity,
                                       std::numeric_limits<float>::quiet_NaN()};
  for (const Shape& shape : {Shape{2, 3, 4}, Shape{7}, Shape{1, 8}, Shape{}, Shape{0, 3}}) {
    Tensor tensor(shape);
    for (int64_t i = 0; i < tensor.numel(); ++i) {
      tensor.data()[i] = i < static_cast<int64_t>(specials.size()) ? specials[static_cast<size_t>(i)]
                                                                  : static_cast<float>(i) * 0.37f - 4.0f;
    }
    const fs::path file = path("array.npy");
    write_float_npy(file, tensor);
    const Tensor back = read_float_npy(file);
    EXPECT_EQ(back.shape(), shape) << shape_string(shape);
    ASSERT_EQ(back.numel(), tensor.numel());
    EXPECT_EQ(std::memcmp(back.data(), tensor.data(), static_cast<size_t>(tensor.numel()) * 4), 0) << shape_string(shape);
  }
}

TEST_F(NpyFile, WrittenHeaderFollowsTheFormat) {
  const fs::path file = path("array.npy");
  write_float_npy(file, Tensor::zeros({3, 5}));
  const std::string bytes = read_bytes(file);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_length) % 64, 0u) << "the data must start 64-byte aligned";
  const std::string header = bytes.substr(10, header_length);
  EXPECT_EQ(header.back(), '\n');
  expect_contains(header, "'descr': '<f4'");
  expect_contains(header, "'fortran_order': False");
  expect_contains(header, "'shape': (3, 5)");
  EXPECT_EQ(bytes.size(), 10 + header_length + 15 * 4);
  // A one-dimensional shape is a one-element tuple, with its comma.
  write_float_npy(file, Tensor::zeros({4}));
  expect_contains(read_bytes(file), "'shape': (4,)");
  // No temporary file is left beside the output.
  EXPECT_EQ(std::distance(fs::directory_iterator(directory_), fs::directory_iterator()), 1);
}

TEST_F(NpyFile, Int32TokensRoundTrip) {
  TokenArray tokens;
  tokens.shape = {2, 3};
  tokens.ids = {0, 1, std::numeric_limits<int32_t>::max(), -1, std::numeric_limits<int32_t>::min(), 95};
  const fs::path file = path("tokens.npy");
  write_token_npy(file, tokens);
  const TokenArray back = read_token_npy(file);
  EXPECT_EQ(back.shape, tokens.shape);
  EXPECT_EQ(back.ids, tokens.ids);
  const IntegerArray integers = read_integer_npy(file);
  EXPECT_EQ(integers.shape, tokens.shape);
  EXPECT_EQ(integers.values, std::vector<int64_t>(tokens.ids.begin(), tokens.ids.end()));
}

TEST_F(NpyFile, Int64TokensAreRead) {
  const std::vector<int64_t> values = {5, 0, 17, 3, 2, 1};
  const fs::path file = path("tokens64.npy");
  write_bytes(file, npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }", values.data(), 48));
  const TokenArray tokens = read_token_npy(file);
  EXPECT_EQ(tokens.shape, (Shape{3, 2}));
  EXPECT_EQ(tokens.ids, (std::vector<int32_t>{5, 0, 17, 3, 2, 1}));
}

TEST_F(NpyFile, Int64TokenThatDoesNotFit32BitsIsRefused) {
  const std::vector<int64_t> values = {1, int64_t{1} << 40};
  const fs::path file = path("huge.npy");
  write_bytes(file, npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }", values.data(), 16));
  const std::string message = error_of([&] { read_token_npy(file); });
  expect_contains(message, file.string());
  expect_contains(message, "does not fit 32 bits");
}

// ---------------------------------------------------------------------------------------------

TEST_F(NpyFile, BadMagicIsRefused) {
  const fs::path file = path("not_numpy.npy");
  write_bytes(file, std::string("PK\x03\x04 this is a zip file, not an array", 40));
  for (const auto& read : std::vector<std::function<void()>>{[&] { read_float_npy(file); },
                                                              [&] { read_token_npy(file); }}) {
    const std::string message = error_of(read);
    expect_contains(message, file.string());
    expect_contains(message, "bad magic");
  }
}

TEST_F(NpyFile, TruncatedDataIsRefused) {
  const fs::path floats = path("floats.npy");
  write_float_npy(floats, Tensor::zeros({4, 4}));
  std::string bytes = read_bytes(floats);
  write_bytes(floats, bytes.substr(0, bytes.size() - 3));
  std::string message = error_of([&] { read_float_npy(floats); });
  expect_contains(message, floats.string());
  expect_contains(message, "truncated");

  const fs::path tokens = path("tokens.npy");
  write_token_npy(tokens, {{2, 2}, {1, 2, 3, 4}});
  bytes = read_bytes(tokens);
  write_bytes(tokens, bytes.substr(0, bytes.size() - 4));
  message = error_of([&] { read_token_npy(tokens); });
  expect_contains(message, tokens.string());
  expect_contains(message, "truncated");

  // Cut inside the header itself.
  write_bytes(tokens, bytes.substr(0, 20));
  message = error_of([&] { read_token_npy(tokens); });
  expect_contains(message, tokens.string());
  expect_contains(message, "truncated");
}

TEST_F(NpyFile, FortranOrderIsRefused) {
  const std::vector<float> values(6, 1.0f);
  const fs::path file = path("fortran.npy");
  write_bytes(file, npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", values.data(), 24));
  const std::string message = error_of([&] { read_float_npy(file); });
  expect_contains(message, file.string());
  expect_contains(message, "Fortran");
}

TEST_F(NpyFile, WrongDtypeOrRankIsRefused) {
  const fs::path floats = path("floats.npy");
  write_float_npy(floats, Tensor::zeros({2, 2}));
  std::string message = error_of([&] { read_token_npy(floats); });
  expect_contains(message, floats.string());
  expect_contains(message, "'<f4'");

  const fs::path tokens = path("tokens.npy");
  write_token_npy(tokens, {{2, 2}, {1, 2, 3, 4}});
  message = error_of([&] { read_float_npy(tokens); });
  expect_contains(message, tokens.string());
  expect_contains(message, "expected float32");

  const std::vector<int32_t> flat = {1, 2, 3};
  const fs::path rank1 = path("flat.npy");
  write_bytes(rank1, npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", flat.data(), 12));
  message = error_of([&] { read_token_npy(rank1); });
  expect_contains(message, rank1.string());
  expect_contains(message, "expected [batch, time]");

  const fs::path big_endian = path("big_endian.npy");
  write_bytes(big_endian, npy_bytes("{'descr': '>i4', 'fortran_order': False, 'shape': (1, 3), }", flat.data(), 12));
  message = error_of([&] { read_token_npy(big_endian); });
  expect_contains(message, big_endian.string());
  expect_contains(message, "'>i4'");
}

TEST_F(NpyFile, MissingFileIsRefused) {
  const fs::path file = path("absent.npy");
  const std::string message = error_of([&] { read_token_npy(file); });
  expect_contains(message, file.string());
  expect_contains(message, "cannot open");
}

}  // namespace
}  // namespace temoe
