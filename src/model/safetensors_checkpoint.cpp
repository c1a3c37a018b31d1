#include "src/model/safetensors_checkpoint.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "src/core/error.hpp"

namespace temoe {

namespace {
const char* const kSingleFile = "model.safetensors";
const char* const kIndexFile = "model.safetensors.index.json";
// Whether `path` exists; a path the file system cannot look up (a name longer than it allows, a
// component that is a file) is an error naming the path, not a filesystem_error escaping.
bool path_exists(const std::filesystem::path& path, const std::string& what) {
  std::error_code error;
  const bool exists = std::filesystem::exists(path, error);
  if (error) TEMOE_FAIL(what << ": cannot look up " << path.string() << ": " << error.message());
  return exists;
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(std::filesystem::path directory) : directory_(std::move(directory)) {
  std::error_code lookup;
  if (!std::filesystem::is_directory(directory_, lookup)) TEMOE_FAIL(directory_.string() << ": not a model directory");
  const auto index_path = directory_ / kIndexFile;
  if (path_exists(index_path, directory_.string())) {
    std::ifstream stream(index_path);
    if (!stream) TEMOE_FAIL(index_path.string() << ": cannot open");
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(stream);
    } catch (const nlohmann::json::exception& error) {
      TEMOE_FAIL(index_path.string() << ": malformed JSON: " << error.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      TEMOE_FAIL(index_path.string() << ": expected an object with a 'weight_map' object");
    }
    std::map<std::string, const SafetensorsFile*> file_by_name;
    for (const auto& [tensor, file_value] : index["weight_map"].items()) {
      if (!file_value.is_string()) TEMOE_FAIL(index_path.string() << ": weight_map['" << tensor << "'] is not a file name");
      const std::string file_name = file_value.get<std::string>();
      if (file_name.find('/') != std::string::npos || file_name == "." || file_name == "..") {
        TEMOE_FAIL(index_path.string() << ": weight_map['" << tensor << "'] = '" << file_name << "' leaves the directory");
      }
      if (file_name.empty() || file_name.find('\0') != std::string::npos) {
        TEMOE_FAIL(index_path.string() << ": weight_map['" << tensor << "'] = " << file_value.dump()
                                       << " is not a file name (expected e.g. model-00001-of-00002.safetensors)");
      }
      auto found = file_by_name.find(file_name);
      if (found == file_by_name.end()) {
        if (!path_exists(directory_ / file_name, index_path.string() + ": weight_map['" + tensor + "']")) {
          TEMOE_FAIL(index_path.string() << " maps tensor '" << tensor << "' to " << file_name << ", but "
                                         << (directory_ / file_name).string() << " does not exist");
        }
        files_.push_back(std::make_unique<SafetensorsFile>(directory_ / file_name));
        found = file_by_name.emplace(file_name, files_.back().get()).first;
      }
      if (!found->second->contains(tensor)) {
        TEMOE_FAIL(index_path.string() << " maps tensor '" << tensor << "' to " << file_name << ", which does not contain it");
      }
      owner_[tensor] = found->second;
    }
    for (const auto& file : files_) {
      for (const auto& [tensor, entry] : file->entries()) {
        if (!owner_.count(tensor)) {
          TEMOE_FAIL(file->path().string() << " holds tensor '" << tensor << "', which " << kIndexFile << " does not list");
        }
      }
    }
  } else {
    const auto single = directory_ / kSingleFile;
    if (!path_exists(single, directory_.string())) {
      TEMOE_FAIL(directory_.string() << ": neither " << kSingleFile << " nor " << kIndexFile << " is present");
    }
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& [tensor, entry] : files_.back()->entries()) owner_[tensor] = files_.back().get();
  }
}

std::vector<std::string> SafetensorsCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(owner_.size());
  for (const auto& [name, file] : owner_) names.push_back(name);
  return names;
}

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  const auto found = owner_.find(name);
  if (found == owner_.end()) TEMOE_FAIL(directory_.string() << ": the checkpoint has no tensor '" << name << "'");
  return found->second->entry(name);
}

const std::filesystem::path& SafetensorsCheckpoint::file_of(const std::string& name) const {
  entry(name);
  return owner_.at(name)->path();
}

Tensor SafetensorsCheckpoint::load(const std::string& name, const Shape& expected_shape) const {
  const SafetensorsEntry& found = entry(name);
  if (found.shape != expected_shape) {
    TEMOE_FAIL(file_of(name).string() << ": tensor '" << name << "' has shape " << shape_string(found.shape)
                                      << ", but config.json implies " << shape_string(expected_shape));
  }
  Tensor tensor(expected_shape);
  owner_.at(name)->read_as_float(name, tensor.data());
  return tensor;
}

namespace {

void check_shape_found(const SafetensorsCheckpoint& checkpoint, const std::string& name, const Shape& expected_shape) {
  const SafetensorsEntry& found = checkpoint.entry(name);
  if (found.shape != expected_shape) {
    TEMOE_FAIL(checkpoint.file_of(name).string() << ": tensor '" << name << "' has shape " << shape_string(found.shape)
                                                 << ", but config.json implies " << shape_string(expected_shape));
  }
}

}  // namespace

Tensor SafetensorsCheckpoint::load_rows(const std::string& name, const Shape& expected_shape, int64_t first,
                                        int64_t count) const {
  check_shape_found(*this, name, expected_shape);
  Shape shape = expected_shape;
  shape.at(0) = count;
  Tensor tensor(shape);
  owner_.at(name)->read_rows_as_float(name, first, count, tensor.data());
  return tensor;
}

std::vector<uint8_t> SafetensorsCheckpoint::load_rows_raw(const std::string& name, const Shape& expected_shape,
                                                          DType expected_dtype, int64_t first, int64_t count) const {
  check_shape_found(*this, name, expected_shape);
  const SafetensorsEntry& found = entry(name);
  if (found.dtype != expected_dtype) {
    TEMOE_FAIL(file_of(name).string() << ": tensor '" << name << "' has dtype " << to_string(found.dtype) << ", expected "
                                      << to_string(expected_dtype));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(element_count(expected_shape) / expected_shape.at(0) * count) *
                             dtype_size(expected_dtype));
  owner_.at(name)->read_rows_raw(name, first, count, bytes.data());
  return bytes;
}

uint64_t SafetensorsCheckpoint::bytes_read() const {
  uint64_t total = 0;
  for (const auto& file : files_) total += file->bytes_read();
  return total;
}

}  // namespace temoe
