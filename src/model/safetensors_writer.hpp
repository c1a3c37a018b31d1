#pragma once
// Writes weights in the Hugging Face layout: model.safetensors, or shards plus
// model.safetensors.index.json. Every file is written atomically.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/model/dtype.hpp"
#include "src/tensor/tensor.hpp"

namespace temoe {

struct NamedTensor {
  std::string name;
  Tensor tensor;  // host fp32; converted to the file dtype on write
  std::optional<DType> dtype = std::nullopt;  // this tensor's own dtype (U8 MXFP4 bytes); else the file's
};

void write_safetensors_file(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors, DType dtype);

// shards == 1 writes model.safetensors; otherwise model-0000i-of-0000n.safetensors and the index,
// cutting the tensor list (in its given order) into runs of roughly equal bytes.
void write_safetensors_checkpoint(const std::filesystem::path& directory, const std::vector<NamedTensor>& tensors,
                                  DType dtype, int shards);

}  // namespace temoe
