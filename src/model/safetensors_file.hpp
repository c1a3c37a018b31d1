#pragma once
// One .safetensors file: the header is parsed and validated when the file is opened; tensor data
// is read on request with pread, so a rank that needs a slice of a checkpoint reads only that slice.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "src/model/dtype.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

struct SafetensorsEntry {
  DType dtype = DType::f32;
  Shape shape;
  uint64_t file_offset = 0;  // absolute byte offset of the data in the file
  uint64_t byte_count = 0;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::filesystem::path path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;

  // Reads one tensor and converts it to fp32; destination holds element_count(shape) floats.
  void read_as_float(const std::string& name, float* destination) const;
  // Rows [first, first + count) along the first dimension (contiguous bytes): converted to fp32,
  // or as stored (U8 MXFP4 blocks and scales). A rank reads only its experts' rows of a fused tensor.
  void read_rows_as_float(const std::string& name, int64_t first, int64_t count, float* destination) const;
  void read_rows_raw(const std::string& name, int64_t first, int64_t count, void* destination) const;
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  std::filesystem::path path_;
  int descriptor_ = -1;
  std::map<std::string, SafetensorsEntry> entries_;
  mutable uint64_t bytes_read_ = 0;
};

}  // namespace temoe
