#pragma once
// A Hugging Face weight directory: model.safetensors, or model-0000x-of-0000y.safetensors shards
// listed in model.safetensors.index.json. Only headers are read when it is opened.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/model/safetensors_file.hpp"

namespace temoe {

class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(std::filesystem::path directory);

  const std::filesystem::path& directory() const { return directory_; }
  std::vector<std::string> tensor_names() const;
  bool contains(const std::string& name) const { return owner_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  const std::filesystem::path& file_of(const std::string& name) const;

  // Reads one tensor as fp32 after checking that it has the expected shape.
  Tensor load(const std::string& name, const Shape& expected_shape) const;
  // Rows [first, first + count) of a tensor of shape `expected_shape`, as fp32 ([count, ...]), or
  // as the bytes stored (U8). Only those rows are read.
  Tensor load_rows(const std::string& name, const Shape& expected_shape, int64_t first, int64_t count) const;
  std::vector<uint8_t> load_rows_raw(const std::string& name, const Shape& expected_shape, DType expected_dtype,
                                     int64_t first, int64_t count) const;
  // Bytes of tensor data read so far from all files (a test checks slice loading with it).
  uint64_t bytes_read() const;

 private:
  std::filesystem::path directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> owner_;
};

}  // namespace temoe
