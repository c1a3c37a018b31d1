// The token-data HDF5 format: a write/read round trip, and a refusal naming the file and the fault
// for every broken file (written here with the HDF5 C API, as a foreign tool would).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/data/token_dataset.hpp"
#include "tests/support/scratch_directory_test.hpp"
#include "tests/support/error_message.hpp"

namespace temoe::data {
namespace {

namespace fs = std::filesystem;

using testing::error_of;

using testing::expect_contains;

// Writes HDF5 files field by field, so each test can break exactly one thing.
class RawFile {
 public:
  explicit RawFile(const fs::path& path) : file_(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {
    EXPECT_GE(file_, 0) << path;
  }
  ~RawFile() { H5Fclose(file_); }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;

  // `type` is the dtype in the file; `memory_type` describes `values` (default: the same).
  template <typename T>
  RawFile& dataset(const char* name, hid_t type, const std::vector<hsize_t>& shape, const std::vector<T>& values,
                   hid_t memory_type = H5I_INVALID_HID) {
    const hid_t space = H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr);
    const hid_t dataset = H5Dcreate2(file_, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t source = memory_type >= 0 ? memory_type : type;
    EXPECT_GE(H5Dwrite(dataset, source, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0) << name;
    H5Dclose(dataset);
    H5Sclose(space);
    return *this;
  }
  RawFile& attribute(const char* name, int64_t value) {
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attribute = H5Acreate2(file_, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Awrite(attribute, H5T_NATIVE_INT64, &value), 0) << name;
    H5Aclose(attribute);
    H5Sclose(space);
    return *this;
  }
  // A variable-length string attribute, as h5py writes a Python str.
  RawFile& string_attribute(const char* name, const std::string& value) {
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attribute = H5Acreate2(file_, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* text = value.c_str();
    EXPECT_GE(H5Awrite(attribute, type, &text), 0) << name;
    H5Aclose(attribute);
    H5Sclose(space);
    H5Tclose(type);
    return *this;
  }
  RawFile& group(const char* name) {
    H5Gclose(H5Gcreate2(file_, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    return *this;
  }

 private:
  hid_t file_;
};

class TokenDatasetTest : public testing::ScratchDirectoryTest {
 protected:
  fs::path path(const std::string& name) const { return directory_ / name; }

  // A valid file with two documents of 3 and 2 tokens, with whatever `change` does to it.
  std::string refusal(const std::function<void(RawFile&)>& body, bool with_version = true, bool with_vocab = true) {
    const fs::path file = path("broken.h5");
    {
      RawFile raw(file);
      if (with_version) raw.attribute("format_version", kTokenDataFormatVersion);
      if (with_vocab) raw.attribute("vocab_size", 10);
      body(raw);
    }
    const std::string message = error_of([&] { read_token_dataset(file); });
    EXPECT_FALSE(message.empty()) << "the file was accepted";
    expect_contains(message, file.string());
    return message;
  }

};

const std::vector<int32_t> kTokens = {1, 2, 3, 4, 5};
const std::vector<int64_t> kOffsets = {0, 3, 5};

void good_tokens(RawFile& raw) { raw.dataset("tokens", H5T_NATIVE_INT32, {5}, kTokens); }
void good_offsets(RawFile& raw) { raw.dataset("document_offsets", H5T_NATIVE_INT64, {3}, kOffsets); }

TEST_F(TokenDatasetTest, RoundTripKeepsEverything) {
  TokenDataset dataset;
  dataset.vocab_size = 7;
  dataset.topic_count = 2;
  dataset.tokens = {0, 6, 3, 2, 5, 1};
  dataset.topics = {0, 0, 1, 1, 1, 0};
  dataset.document_offsets = {0, 2, 6};
  dataset.generator = R"({"name":"test"})";
  write_token_dataset(path("data.h5"), dataset);
  const TokenDataset read = read_token_dataset(path("data.h5"));
  EXPECT_EQ(read.path, path("data.h5"));
  EXPECT_EQ(read.vocab_size, 7);
  EXPECT_EQ(read.topic_count, 2);
  EXPECT_EQ(read.tokens, dataset.tokens);
  EXPECT_EQ(read.topics, dataset.topics);
  EXPECT_EQ(read.document_offsets, dataset.document_offsets);
  EXPECT_EQ(read.generator, dataset.generator);
  EXPECT_EQ(read.document_count(), 2);
  EXPECT_EQ(read.document_length(1), 4);
}

TEST_F(TokenDatasetTest, ForeignFilesWithoutTopicsAndWithAVariableLengthGeneratorAreRead) {
  {
    RawFile raw(path("foreign.h5"));
    raw.attribute("format_version", 1).attribute("vocab_size", 10).string_attribute("generator", "{\"from\":\"h5py\"}");
    // Big-endian int32 is still int32: the reader converts.
    raw.dataset("tokens", H5T_STD_I32BE, {5}, kTokens, H5T_NATIVE_INT32);
    good_offsets(raw);
  }
  const TokenDataset read = read_token_dataset(path("foreign.h5"));
  EXPECT_FALSE(read.has_topics());
  EXPECT_EQ(read.generator, "{\"from\":\"h5py\"}");
  EXPECT_EQ(read.tokens, kTokens);
}

TEST_F(TokenDatasetTest, WritingInvalidDataIsRefusedAndLeavesNoFile) {
  TokenDataset dataset;
  dataset.vocab_size = 4;
  dataset.tokens = {0, 4};
  dataset.document_offsets = {0, 2};
  expect_contains(error_of([&] { write_token_dataset(path("out.h5"), dataset); }), "/tokens[1] = 4 is outside [0, vocab_size = 4)");
  EXPECT_FALSE(fs::exists(path("out.h5")));
  const std::string missing_directory = error_of([&] {
    dataset.tokens = {0, 3};
    write_token_dataset(path("no/such/dir/out.h5"), dataset);
  });
  expect_contains(missing_directory, path("no/such/dir/out.h5").string() + ": cannot create the temporary file");
}

TEST_F(TokenDatasetTest, MissingFileDirectoryAndNonHdf5AreRefused) {
  expect_contains(error_of([&] { read_token_dataset(path("absent.h5")); }), path("absent.h5").string() + ": no such file");
  expect_contains(error_of([&] { read_token_dataset(directory_); }), "is a directory");
  {
    std::ofstream stream(path("text.h5"));
    stream << "tokens: 1 2 3\n";
  }
  expect_contains(error_of([&] { read_token_dataset(path("text.h5")); }), path("text.h5").string() + ": not an HDF5 file");
  // A file cut short (a copy interrupted half-way) is refused too.
  TokenDataset dataset;
  dataset.vocab_size = 100;
  dataset.tokens.assign(4096, 7);
  dataset.document_offsets = {0, 4096};
  write_token_dataset(path("whole.h5"), dataset);
  fs::copy_file(path("whole.h5"), path("cut.h5"));
  fs::resize_file(path("cut.h5"), fs::file_size(path("whole.h5")) / 2);
  const std::string cut = error_of([&] { read_token_dataset(path("cut.h5")); });
  EXPECT_FALSE(cut.empty()) << "a truncated file was accepted";
  expect_contains(cut, path("cut.h5").string());
}

TEST_F(TokenDatasetTest, MissingOrWrongAttributesAreRefused) {
  expect_contains(refusal([](RawFile& raw) { good_tokens(raw); good_offsets(raw); }, false),
                  "no attribute 'format_version'");
  expect_contains(refusal([](RawFile& raw) { raw.attribute("format_version", 2); good_tokens(raw); good_offsets(raw); }, false),
                  "format_version 2 is not supported");
  expect_contains(refusal([](RawFile& raw) { good_tokens(raw); good_offsets(raw); }, true, false),
                  "no attribute 'vocab_size'");
  expect_contains(refusal([](RawFile& raw) { raw.attribute("vocab_size", 0); good_tokens(raw); good_offsets(raw); }, true, false),
                  "vocab_size = 0");
  expect_contains(refusal([](RawFile& raw) { raw.string_attribute("vocab_size", "ten"); good_tokens(raw); good_offsets(raw); }, true, false),
                  "attribute 'vocab_size' has type string; expected an integer");
}

TEST_F(TokenDatasetTest, MissingDatasetsAreRefused) {
  expect_contains(refusal([](RawFile& raw) { good_offsets(raw); }), "no dataset /tokens");
  expect_contains(refusal([](RawFile& raw) { good_tokens(raw); }), "no dataset /document_offsets");
  expect_contains(refusal([](RawFile& raw) { raw.group("tokens"); good_offsets(raw); }), "/tokens is not a dataset");
  expect_contains(refusal([](RawFile& raw) {
                    good_tokens(raw);
                    good_offsets(raw);
                    raw.dataset("topics", H5T_NATIVE_INT16, {5}, std::vector<int16_t>(5, 0));
                  }),
                  "no attribute 'topic_count'");
}

TEST_F(TokenDatasetTest, WrongDtypesAndShapesAreRefused) {
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_INT64, {5}, std::vector<int64_t>{1, 2, 3, 4, 5});
                    good_offsets(raw);
                  }),
                  "/tokens has dtype int64; expected int32");
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_FLOAT, {5}, std::vector<float>{1, 2, 3, 4, 5});
                    good_offsets(raw);
                  }),
                  "/tokens has dtype float32; expected int32");
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_UINT32, {5}, std::vector<uint32_t>{1, 2, 3, 4, 5});
                    good_offsets(raw);
                  }),
                  "/tokens has dtype uint32; expected int32");
  expect_contains(refusal([](RawFile& raw) {
                    good_tokens(raw);
                    raw.dataset("document_offsets", H5T_NATIVE_INT32, {3}, std::vector<int32_t>{0, 3, 5});
                  }),
                  "/document_offsets has dtype int32; expected int64");
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_INT32, {1, 5}, kTokens);
                    good_offsets(raw);
                  }),
                  "/tokens has shape [1, 5]; expected one dimension");
  expect_contains(refusal([](RawFile& raw) {
                    good_tokens(raw);
                    good_offsets(raw);
                    raw.attribute("topic_count", 2);
                    raw.dataset("topics", H5T_NATIVE_INT8, {5}, std::vector<int8_t>(5, 0));
                  }),
                  "/topics has dtype int8; expected int16");
}

TEST_F(TokenDatasetTest, BadOffsetsAreRefused) {
  const auto with_offsets = [&](const std::vector<int64_t>& offsets) {
    return refusal([&](RawFile& raw) {
      good_tokens(raw);
      raw.dataset("document_offsets", H5T_NATIVE_INT64, {offsets.size()}, offsets);
    });
  };
  expect_contains(with_offsets({0, 3, 3, 5}), "/document_offsets is not increasing: [1] = 3, [2] = 3");
  expect_contains(with_offsets({0, 4, 2, 5}), "/document_offsets is not increasing: [1] = 4, [2] = 2");
  expect_contains(with_offsets({0, 3, 7}), "/document_offsets[2] = 7 is past the end of /tokens (5 tokens)");
  expect_contains(with_offsets({0, 3}), "the last document ends at 3 but /tokens has 5 tokens");
  expect_contains(with_offsets({1, 3, 5}), "/document_offsets[0] = 1; expected 0");
  expect_contains(with_offsets({0}), "/document_offsets has 1 entries; expected D + 1 >= 2");
}

TEST_F(TokenDatasetTest, TokenIdsAndTopicsOutsideTheirRangesAreRefused) {
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_INT32, {5}, std::vector<int32_t>{1, 2, 10, 4, 5});
                    good_offsets(raw);
                  }),
                  "/tokens[2] = 10 is outside [0, vocab_size = 10)");
  expect_contains(refusal([](RawFile& raw) {
                    raw.dataset("tokens", H5T_NATIVE_INT32, {5}, std::vector<int32_t>{1, 2, 3, -1, 5});
                    good_offsets(raw);
                  }),
                  "/tokens[3] = -1 is outside [0, vocab_size = 10)");
  expect_contains(refusal([](RawFile& raw) {
                    good_tokens(raw);
                    good_offsets(raw);
                    raw.attribute("topic_count", 2);
                    raw.dataset("topics", H5T_NATIVE_INT16, {5}, std::vector<int16_t>{0, 1, 2, 0, 0});
                  }),
                  "/topics[2] = 2 is outside [0, topic_count = 2)");
  expect_contains(refusal([](RawFile& raw) {
                    good_tokens(raw);
                    good_offsets(raw);
                    raw.attribute("topic_count", 2);
                    raw.dataset("topics", H5T_NATIVE_INT16, {4}, std::vector<int16_t>{0, 1, 1, 0});
                  }),
                  "/topics has 4 labels but /tokens has 5 tokens");
}

}  // namespace
}  // namespace temoe::data
