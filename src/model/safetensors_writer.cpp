#include "src/model/safetensors_writer.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"

namespace temoe {

void write_safetensors_file(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors, DType dtype) {
  // nlohmann::ordered_json keeps the header in data order, as other writers do.
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const auto& named : tensors) {
    const DType stored = named.dtype.value_or(dtype);
    const uint64_t bytes = static_cast<uint64_t>(named.tensor.numel()) * dtype_size(stored);
    header[named.name] = {{"dtype", to_string(stored)}, {"shape", named.tensor.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_file_atomically(path, [&](std::ostream& stream) {
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(text.size() >> (8 * i));
    stream.write(reinterpret_cast<const char*>(length), 8);
    stream.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::vector<unsigned char> buffer;
    for (const auto& named : tensors) {
      const DType stored = named.dtype.value_or(dtype);
      const auto values = named.tensor.to_vector();
      buffer.resize(values.size() * dtype_size(stored));
      convert_from_float(stored, values.data(), buffer.data(), values.size());
      stream.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
    }
  });
}

void write_safetensors_checkpoint(const std::filesystem::path& directory, const std::vector<NamedTensor>& tensors,
                                  DType dtype, int shards) {
  TEMOE_CHECK(shards >= 1, "shards must be at least 1, got " << shards);
  std::filesystem::create_directories(directory);
  if (shards == 1) {
    write_safetensors_file(directory / "model.safetensors", tensors, dtype);
    return;
  }
  uint64_t total = 0;
  const auto bytes_of = [&](const NamedTensor& named) {
    return static_cast<uint64_t>(named.tensor.numel()) * dtype_size(named.dtype.value_or(dtype));
  };
  for (const auto& named : tensors) total += bytes_of(named);
  nlohmann::ordered_json weight_map;
  std::vector<NamedTensor> current;
  uint64_t written = 0;
  int shard = 0;
  const auto flush = [&] {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", shard + 1, shards);
    for (const auto& named : current) weight_map[named.name] = name;
    write_safetensors_file(directory / name, current, dtype);
    current.clear();
    ++shard;
  };
  for (const auto& named : tensors) {
    current.push_back(named);
    written += bytes_of(named);
    if (shard < shards - 1 && written * static_cast<uint64_t>(shards) >= total * static_cast<uint64_t>(shard + 1)) flush();
  }
  while (shard < shards) flush();  // trailing shards may be empty for tiny models; still valid files
  const nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomically(directory / "model.safetensors.index.json",
                        [&](std::ostream& stream) { stream << index.dump(2) << "\n"; });
}

}  // namespace temoe
