// Our Fletcher-32 against HDF5's own filter (the checksum it appends to a chunk it wrote) and
// against a plain word-by-word definition, on random, all-zero, all-0xff and odd-length data; and
// chunks that the checkpoint writer wrote directly pass HDF5's own check when read through it.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "src/checkpoint/checkpoint_file.hpp"
#include "src/checkpoint/fletcher32.hpp"
#include "src/checkpoint/synthetic_checkpoint.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;

// The definition: both sums folded (end-around carry) after every word.
uint32_t fletcher32_word_by_word(const std::vector<unsigned char>& data) {
  uint32_t sum1 = 0, sum2 = 0;
  auto fold = [](uint32_t x) { return (x & 0xffff) + (x >> 16); };
  for (size_t i = 0; i < data.size(); i += 2) {
    const uint32_t word = (static_cast<uint32_t>(data[i]) << 8) | (i + 1 < data.size() ? data[i + 1] : 0);
    sum1 = fold(sum1 + word);
    sum2 = fold(sum2 + sum1);
  }
  return (fold(sum2) << 16) | fold(sum1);
}

uint32_t ours(const std::vector<unsigned char>& data) {
  return hdf5_fletcher32(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
}

std::vector<unsigned char> pattern(size_t length, int kind, std::mt19937& random) {
  std::vector<unsigned char> data(length);
  for (auto& byte : data) byte = kind == 0 ? static_cast<unsigned char>(random()) : kind == 1 ? 0 : 0xff;
  return data;
}

TEST(Fletcher32, MatchesTheWordByWordDefinition) {
  std::mt19937 random(3);
  for (const size_t length : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{510}, size_t{512}, size_t{513},
                              size_t{721}, size_t{4096}, size_t{100001}}) {
    for (int kind = 0; kind < 3; ++kind) {
      const auto data = pattern(length, kind, random);
      EXPECT_EQ(ours(data), fletcher32_word_by_word(data)) << "length " << length << " kind " << kind;
    }
  }
}

TEST(Fletcher32, MatchesHdf5Filter) {
  const fs::path file = fs::path(::testing::TempDir()) / ("temoe_fletcher_" + std::to_string(::getpid()) + ".h5");
  std::mt19937 random(5);
  for (int kind = 0; kind < 3; ++kind) {
    for (const hsize_t length : {hsize_t{2}, hsize_t{1000}, hsize_t{65536}, hsize_t{300001}}) {
      const auto data = pattern(length, kind, random);
      const hid_t handle = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
      const hid_t space = H5Screate_simple(1, &length, nullptr);
      const hid_t properties = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_chunk(properties, 1, &length);
      H5Pset_fletcher32(properties);
      const hid_t dataset = H5Dcreate2(handle, "d", H5T_STD_U8LE, space, H5P_DEFAULT, properties, H5P_DEFAULT);
      ASSERT_GE(H5Dwrite(dataset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
      const hsize_t origin = 0;
      std::vector<unsigned char> stored(length + 4);
      uint32_t mask = 0;
      ASSERT_GE(H5Dread_chunk(dataset, H5P_DEFAULT, &origin, &mask, stored.data()), 0);
      uint32_t appended = 0;
      std::memcpy(&appended, stored.data() + length, 4);
      EXPECT_EQ(ours(data), appended) << "length " << length << " kind " << kind;
      H5Dclose(dataset);
      H5Pclose(properties);
      H5Sclose(space);
      H5Fclose(handle);
    }
  }
  fs::remove(file);
}

// Tensor chunks written by the checkpoint writer with H5Dwrite_chunk, read back through HDF5's
// filter pipeline (which verifies each chunk's Fletcher32 value itself).
TEST(Fletcher32, DirectlyWrittenChunksPassHdf5sOwnCheck) {
  const fs::path file = fs::path(::testing::TempDir()) / ("temoe_fletcher_ckpt_" + std::to_string(::getpid()) + ".h5");
  const Checkpoint checkpoint = make_synthetic_checkpoint(9, 30 << 20);  // chunks of 4 MiB, some partial
  write_checkpoint_file(file, checkpoint);
  const hid_t handle = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(handle, 0);
  const auto& set = checkpoint.parameter_set("controller");
  for (size_t i = 0; i < set.values.size(); ++i) {
    const std::string name = "/parameter_sets/controller/" + set.parameter_names[i] + "/exp_avg_sq";
    const hid_t dataset = H5Dopen2(handle, name.c_str(), H5P_DEFAULT);
    std::vector<float> values(static_cast<size_t>(set.values[i].numel()));
    ASSERT_GE(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0) << name;
    EXPECT_EQ(std::memcmp(values.data(), set.second_moments[i].data(), values.size() * 4), 0) << name;
    H5Dclose(dataset);
  }
  H5Fclose(handle);
  fs::remove(file);
}

}  // namespace
}  // namespace temoe
