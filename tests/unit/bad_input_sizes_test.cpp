// Files whose headers claim sizes they do not hold (issue 18): every reader refuses, with a message
// naming the file and the offending key or shape, a shape whose element or byte count overflows
// int64, a claimed size larger than the file (before allocating it), and config.json sizes past
// their bounds. Each case writes its bad file into a scratch directory.
//
// The "larger than the file" cases claim about 2^62 bytes: without the check the reader's
// allocation fails at once (std::bad_alloc, not temoe::Error), so the test fails instead of
// exhausting the machine's memory.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/checkpoint/checkpoint_file.hpp"
#include "src/core/error.hpp"
#include "src/data/token_dataset.hpp"
#include "src/io/npy_file.hpp"
#include "src/model/model_config.hpp"
#include "src/model/safetensors_checkpoint.hpp"
#include "src/model/safetensors_file.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/unit/checkpoint_test_support.hpp"
#include "tests/support/error_message.hpp"
#include "tests/support/npy_bytes.hpp"

namespace temoe {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = TEMOE_FIXTURE_DIR;

class BadInputSizes : public testing::ScratchDirectoryTest {
 protected:
  fs::path path(const std::string& name) const { return directory_ / name; }
};

using testing::error_of;

using testing::expect_contains;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// ---------------------------------------------------------------------------------------------
// .npy

using testing::npy_bytes;

TEST_F(BadInputSizes, NpyShapeWhoseCountWrapsIsRefused) {
  // 2^32 * 2^32 wraps to 0 elements in unchecked int64 arithmetic, which "fits" an empty file.
  const fs::path file = path("wrapping.npy");
  write_bytes(file, npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"));
  for (const auto& read : std::vector<std::function<void()>>{[&] { read_token_npy(file); },
                                                              [&] { read_integer_npy(file); }}) {
    const std::string message = error_of(read);
    expect_contains(message, file.string());
    expect_contains(message, "shape [4294967296, 4294967296]");
  }
  const fs::path floats = path("wrapping_floats.npy");
  write_bytes(floats, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }"));
  const std::string message = error_of([&] { read_float_npy(floats); });
  expect_contains(message, floats.string());
  expect_contains(message, "shape [4611686018427387904] of 4-byte elements");
}

TEST_F(BadInputSizes, NpyShapeLargerThanTheFileIsRefusedBeforeAllocating) {
  const fs::path file = path("huge.npy");
  write_bytes(file, npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (576460752303423488,), }", "12345678"));
  for (const auto& read : std::vector<std::function<void()>>{[&] { read_token_npy(file); },
                                                              [&] { read_integer_npy(file); }}) {
    const std::string message = error_of(read);
    expect_contains(message, file.string());
    expect_contains(message, "shape [576460752303423488] needs 4611686018427387904 data bytes, the file has 8");
  }
  const fs::path narrow = path("huge_int32.npy");
  write_bytes(narrow, npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (1073741824, 1073741824), }"));
  expect_contains(error_of([&] { read_integer_npy(narrow); }), "needs 4611686018427387904 data bytes, the file has 0");
}

TEST_F(BadInputSizes, NpyExtentThatIsNotAnIntegerIsRefused) {
  for (const std::string extent : {"two", "-3", "99999999999999999999", "2.5"}) {
    const fs::path file = path("bad_extent.npy");
    write_bytes(file, npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (" + extent + ", 2), }", std::string(64, '\0')));
    const std::string message = error_of([&] { read_token_npy(file); });
    expect_contains(message, file.string());
    expect_contains(message, "extent '" + extent + "' is not an integer in [0, 9223372036854775807]");
  }
}

TEST_F(BadInputSizes, NpyHeaderWithoutEndingQuoteIsRefusedWithoutRecursion) {
  // A megabyte-long unterminated 'descr' (format 2.0 allows 4-byte header lengths): a regex-based
  // parser recursed once per character here and overflowed the stack.
  std::string header = "{'descr': '" + std::string(1000000, 'x');
  header.append((64 - (12 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes("\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xFF));
  const fs::path file = path("long_header.npy");
  write_bytes(file, bytes + header);
  const std::string message = error_of([&] { read_token_npy(file); });
  expect_contains(message, file.string());
  expect_contains(message, ".npy header has no 'descr'");
}

// ---------------------------------------------------------------------------------------------
// safetensors

// A safetensors file: 8-byte little-endian header length, the JSON header, `data`.
std::string safetensors_bytes(const nlohmann::json& header, const std::string& data = "") {
  const std::string text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  return bytes + text + data;
}

TEST_F(BadInputSizes, SafetensorsShapeWhoseCountOrBytesWrapIsRefused) {
  struct Case {
    nlohmann::json shape;
    std::string expected;
  };
  for (const Case& bad : {
           // 2^62 * 4 elements wrap to 0, and 0 bytes match data_offsets [0, 0].
           Case{{4611686018427387904ull, 4}, "shape [4611686018427387904, 4] has more elements than a 64-bit count holds"},
           // 2^62 elements fit int64, but their 2^64 bytes wrap to 0.
           Case{{4611686018427387904ull}, "shape [4611686018427387904] of 4-byte elements needs more bytes"},
       }) {
    const fs::path file = path("wrapping.safetensors");
    write_bytes(file, safetensors_bytes({{"w", {{"dtype", "F32"}, {"shape", bad.shape}, {"data_offsets", {0, 0}}}}}));
    const std::string message = error_of([&] { SafetensorsFile opened(file); });
    expect_contains(message, file.string() + ": tensor 'w'");
    expect_contains(message, bad.expected);
  }
}

TEST_F(BadInputSizes, SafetensorsExtentPastInt64IsRefused) {
  const fs::path file = path("extent.safetensors");
  write_bytes(file, safetensors_bytes({{"w", {{"dtype", "BF16"}, {"shape", {9223372036854775808ull}},
                                              {"data_offsets", {0, 0}}}}}));
  const std::string message = error_of([&] { SafetensorsFile opened(file); });
  expect_contains(message, file.string() + ": tensor 'w': shape [9223372036854775808]");
  expect_contains(message, "is not a list of integers in [0, 9223372036854775807]");
}

TEST_F(BadInputSizes, SafetensorsIndexNamingNoFileIsRefused) {
  const fs::path model = path("model");
  fs::create_directories(model);
  fs::copy(kFixtures / "mixtral_f32" / "model.safetensors", model / "model-00001-of-00001.safetensors");
  for (const std::string& name : {std::string(".."), std::string("."), std::string("")}) {
    const nlohmann::json index = {{"weight_map", {{"lm_head.weight", name}}}};
    write_bytes(model / "model.safetensors.index.json", index.dump());
    const std::string message = error_of([&] { SafetensorsCheckpoint checkpoint(model); });
    expect_contains(message, (model / "model.safetensors.index.json").string() + ": weight_map['lm_head.weight']");
    expect_contains(message, name.empty() ? "is not a file name" : "leaves the directory");
  }
}

// Found by fuzz_safetensors_index: a shard name longer than the file system allows made
// std::filesystem::exists throw filesystem_error (ENAMETOOLONG), which escaped as a crash.
TEST_F(BadInputSizes, SafetensorsIndexNamingAnUnlookableFileIsRefused) {
  const fs::path model = path("model");
  fs::create_directories(model);
  fs::copy(kFixtures / "mixtral_f32" / "model.safetensors", model / "model-00001-of-00001.safetensors");
  const std::string name(300, 'a');
  const nlohmann::json index = {{"weight_map", {{"lm_head.weight", name}}}};
  write_bytes(model / "model.safetensors.index.json", index.dump());
  const std::string message = error_of([&] { SafetensorsCheckpoint checkpoint(model); });
  expect_contains(message, "weight_map['lm_head.weight']");
  expect_contains(message, "cannot look up");
}

// ---------------------------------------------------------------------------------------------
// config.json

nlohmann::json fixture_config_json() {
  std::ifstream stream(kFixtures / "mixtral_f32" / "config.json");
  return nlohmann::json::parse(stream);
}

TEST_F(BadInputSizes, ConfigSizeOneAboveItsBoundIsRefused) {
  const std::vector<std::pair<const char*, int64_t>> bounds = {
      {"vocab_size", int64_t{1} << 24},          {"hidden_size", int64_t{1} << 24},
      {"intermediate_size", int64_t{1} << 24},   {"head_dim", int64_t{1} << 24},
      {"num_hidden_layers", int64_t{1} << 16},   {"num_attention_heads", int64_t{1} << 16},
      {"num_key_value_heads", int64_t{1} << 16}, {"num_local_experts", int64_t{1} << 16},
      {"num_experts_per_tok", int64_t{1} << 16}, {"max_position_embeddings", (int64_t{1} << 31) - 1},
  };
  const fs::path file = path("config.json");
  for (const auto& [key, bound] : bounds) {
    nlohmann::json json = fixture_config_json();
    json[key] = bound + 1;
    write_bytes(file, json.dump());
    const std::string message = error_of([&] { ModelConfig::from_file(file); });
    expect_contains(message, file.string() + ": key '" + key + "' is " + std::to_string(bound + 1) +
                                 ", expected an integer in [1, " + std::to_string(bound) + "]");
  }
}

TEST_F(BadInputSizes, ConfigSizeAtItsBoundIsAccepted) {
  const fs::path file = path("config.json");
  for (const auto& [key, bound] : std::vector<std::pair<const char*, int64_t>>{
           {"vocab_size", int64_t{1} << 24},
           {"intermediate_size", int64_t{1} << 24},
           {"num_hidden_layers", int64_t{1} << 16},
           {"max_position_embeddings", (int64_t{1} << 31) - 1}}) {
    nlohmann::json json = fixture_config_json();
    json[key] = bound;
    write_bytes(file, json.dump());
    EXPECT_EQ(error_of([&] { ModelConfig::from_file(file); }), "") << key;
  }
}

TEST_F(BadInputSizes, ConfigWhoseParameterCountOverflowsIsRefused) {
  nlohmann::json json = fixture_config_json();
  json["num_hidden_layers"] = 1 << 16;
  json["num_local_experts"] = 1 << 16;
  json["hidden_size"] = 1 << 24;
  json["intermediate_size"] = 1 << 24;
  const fs::path file = path("config.json");
  write_bytes(file, json.dump());
  const std::string message = error_of([&] { ModelConfig::from_file(file); });
  expect_contains(message, file.string() + ": the parameter count of the model exceeds 9223372036854775807");
}

TEST_F(BadInputSizes, ConfigHeadDimComesFromHiddenSizeOrIsRefused) {
  const fs::path file = path("config.json");
  nlohmann::json json = fixture_config_json();
  json.erase("head_dim");
  write_bytes(file, json.dump());
  EXPECT_EQ(ModelConfig::from_file(file).head_dim, 48 / 4);
  // More heads than hidden_size: the old integer division gave head_dim 0, which was accepted.
  for (const int heads : {64, 5}) {
    json["num_attention_heads"] = heads;
    json["num_key_value_heads"] = heads;
    write_bytes(file, json.dump());
    const std::string message = error_of([&] { ModelConfig::from_file(file); });
    expect_contains(message, file.string() + ": key 'head_dim' is missing and hidden_size 48 is not a multiple of "
                                             "num_attention_heads " + std::to_string(heads));
  }
}

TEST_F(BadInputSizes, ConfigNonFiniteNumberIsRefused) {
  // JSON text cannot spell infinity (nlohmann refuses 1e999 as a number overflow), but a config
  // built in memory can.
  nlohmann::json json = fixture_config_json();
  json["rope_theta"] = std::numeric_limits<double>::infinity();
  const std::string message = error_of([&] { ModelConfig::from_json(json, "in-memory config"); });
  expect_contains(message, "in-memory config: key 'rope_theta'");
  expect_contains(message, "expected a positive finite number");
}

TEST_F(BadInputSizes, ValidateRefusesUnsetSizesInsteadOfDividingByZero) {
  const ModelConfig unset;
  const std::string message = error_of([&] { unset.validate("preset x"); });
  expect_contains(message, "preset x: key 'vocab_size' is 0, expected an integer in [1, 16777216]");
}

TEST_F(BadInputSizes, SequenceLongerThanMaxPositionEmbeddingsIsRefused) {
  const fs::path file = path("config.json");
  write_bytes(file, fixture_config_json().dump());
  const ModelConfig config = ModelConfig::from_file(file);
  ASSERT_EQ(config.max_position_embeddings, 256);
  EXPECT_EQ(error_of([&] { config.check_positions(256, "forward"); }), "");
  const std::string message = error_of([&] { config.check_positions(257, "forward"); });
  expect_contains(message, "forward: positions [0, 257) exceed max_position_embeddings = 256");
}

// ---------------------------------------------------------------------------------------------
// HDF5 token data

// Replaces dataset `name` of an HDF5 file by a chunked one of `dims` whose chunks are never
// written: the file stays small while its header claims the full size.
void replace_with_unwritten_dataset(const fs::path& file_path, const std::string& name, hid_t type,
                                    const std::vector<hsize_t>& dims, bool fletcher32) {
  const hid_t file = H5Fopen(file_path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  ASSERT_GE(H5Ldelete(file, name.c_str(), H5P_DEFAULT), 0);
  const std::vector<hsize_t> unlimited(dims.size(), H5S_UNLIMITED);
  const std::vector<hsize_t> chunk(dims.size(), 1);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), unlimited.data());
  const hid_t properties = H5Pcreate(H5P_DATASET_CREATE);
  ASSERT_GE(H5Pset_chunk(properties, static_cast<int>(chunk.size()), chunk.data()), 0);
  if (fletcher32) {
    ASSERT_GE(H5Pset_fletcher32(properties), 0);
  }
  const hid_t dataset = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, properties, H5P_DEFAULT);
  ASSERT_GE(dataset, 0);
  H5Dclose(dataset);
  H5Pclose(properties);
  H5Sclose(space);
  H5Fclose(file);
}

TEST_F(BadInputSizes, TokenDataShapeLargerThanTheFileIsRefusedBeforeAllocating) {
  data::TokenDataset dataset;
  dataset.vocab_size = 10;
  dataset.tokens = {1, 2, 3, 4};
  dataset.document_offsets = {0, 2, 4};
  for (const char* name : {"tokens", "document_offsets"}) {
    const fs::path file = path(std::string(name) + ".h5");
    data::write_token_dataset(file, dataset);
    const hsize_t elements = hsize_t{1} << 59;  // 2^61 or 2^62 bytes
    replace_with_unwritten_dataset(file, name, std::string(name) == "tokens" ? H5T_STD_I32LE : H5T_STD_I64LE,
                                   {elements}, false);
    const std::string message = error_of([&] { data::read_token_dataset(file); });
    expect_contains(message, file.string() + ": /" + name + " has shape [576460752303423488]");
    expect_contains(message, "but the file has only " + std::to_string(fs::file_size(file)) + " bytes");
  }
}

TEST_F(BadInputSizes, TokenDataDamagedAttributeIsRefusedNotSkipped) {
  data::TokenDataset dataset;
  dataset.vocab_size = 10;
  dataset.tokens = {1, 2};
  dataset.document_offsets = {0, 2};
  dataset.generator = std::string(1000, 'g');
  const fs::path file = path("generator.h5");
  data::write_token_dataset(file, dataset);
  // The attribute's string type: class 3 (string, version 1), 3 bytes of bit fields, then its
  // size, 1000 = e8 03 00 00. Claiming 1 MiB makes the attribute undecodable (HDF5 checks the
  // type's size against the stored data); the reader used to take it for an absent generator.
  std::string bytes;
  {
    std::ifstream stream(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>());
  }
  size_t found = std::string::npos;
  for (size_t at = 0; at + 8 <= bytes.size(); ++at) {
    if (bytes[at] == '\x13' && bytes.compare(at + 4, 4, std::string("\xe8\x03\x00\x00", 4)) == 0) found = at;
  }
  ASSERT_NE(found, std::string::npos) << "no string datatype of size 1000 in " << file;
  bytes.replace(found + 4, 4, std::string("\x00\x00\x10\x00", 4));
  write_bytes(file, bytes);
  const std::string message = error_of([&] { data::read_token_dataset(file); });
  expect_contains(message, file.string() + ": attribute 'generator' on the root group cannot be read");
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files

class BadCheckpointSizes : public BadInputSizes {
 protected:
  void SetUp() override {
    BadInputSizes::SetUp();
    live_ = checkpoint_testing::make_live_state();
    file_ = path("ckpt.h5");
    write_checkpoint_file(file_, checkpoint_testing::make_sample_checkpoint(*live_));
  }

  // Replaces `dataset` by an unwritten one of `dims`, reseals, and returns the reader's refusal.
  std::string refusal_with(const std::string& dataset, hid_t type, const std::vector<hsize_t>& dims) {
    write_checkpoint_file(file_, checkpoint_testing::make_sample_checkpoint(*live_));
    replace_with_unwritten_dataset(file_, dataset, type, dims, true);
    reseal_checkpoint_file(file_);
    try {
      read_checkpoint_file(file_);
    } catch (const CheckpointError& error) {
      EXPECT_EQ(error.problem(), CheckpointProblem::damaged) << error.what();
      return error.what();
    }
    ADD_FAILURE() << dataset << " with shape of " << dims.size() << " axes was read";
    return "";
  }

  std::unique_ptr<checkpoint_testing::LiveState> live_;
  fs::path file_;
};

TEST_F(BadCheckpointSizes, IntegerDatasetLargerThanTheFileIsRefusedBeforeAllocating) {
  const std::string message = refusal_with("/ranks/random_state", H5T_STD_U64LE, {3, hsize_t{1} << 58});
  expect_contains(message, file_.string() + ": damaged checkpoint: dataset /ranks/random_state has shape "
                                            "[3, 288230376151711744] of 8-byte elements (6917529027641081856 bytes), "
                                            "more than the whole file (" + std::to_string(fs::file_size(file_)) + " bytes)");
}

TEST_F(BadCheckpointSizes, TensorDatasetLargerThanTheFileIsRefusedBeforeAllocating) {
  const std::string dataset = "/parameter_sets/controller/temperature/value";
  const std::string message = refusal_with(dataset, H5T_IEEE_F32LE, {hsize_t{1} << 20, hsize_t{1} << 20, hsize_t{1} << 20});
  expect_contains(message, "dataset " + dataset + " has shape [1048576, 1048576, 1048576] of 4-byte elements");
  expect_contains(message, "more than the whole file");
}

TEST_F(BadCheckpointSizes, TensorDatasetWhoseCountWrapsIsRefused) {
  const std::string dataset = "/parameter_sets/controller/temperature/exp_avg";
  const std::string message = refusal_with(dataset, H5T_IEEE_F32LE, {hsize_t{1} << 32, hsize_t{1} << 32});
  expect_contains(message, file_.string() + ": damaged checkpoint: dataset " + dataset +
                               ": shape [4294967296, 4294967296] has more elements than a 64-bit count holds");
}

TEST_F(BadCheckpointSizes, TextDatasetLargerThanTheFileIsRefused) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  ASSERT_GE(H5Tset_size(type, size_t{1} << 24), 0);  // 16 MiB; the file has a few kB
  const std::string message = refusal_with("/config", type, {1});
  H5Tclose(type);
  expect_contains(message, "dataset /config has shape [1] of 16777216-byte elements");
}

}  // namespace
}  // namespace temoe
