// Bad gpt-oss and Qwen-MoE checkpoints are refused before any weight is read, naming the tensor (or
// config.json key), the shape found and the shape expected: MXFP4 blocks or scales of the wrong
// shape, an unknown layer_types entry, a missing attention-sinks tensor, a missing shared-expert
// tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/core/error.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/safetensors_writer.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

class ArchitectureBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("temoe_architecture_bad_input_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  // The fixture's tensors, rewritten with `edit` applied (each keeps its stored dtype).
  void rewrite(const std::string& fixture, const std::function<void(std::vector<NamedTensor>&)>& edit) {
    const SafetensorsCheckpoint checkpoint(kFixtures / fixture);
    std::vector<NamedTensor> tensors;
    for (const auto& name : checkpoint.tensor_names()) {
      const SafetensorsEntry& entry = checkpoint.entry(name);
      tensors.push_back({name, checkpoint.load(name, entry.shape), entry.dtype});
    }
    edit(tensors);
    write_safetensors_checkpoint(directory_, tensors, DType::f32, 1);
    std::filesystem::copy_file(kFixtures / fixture / "config.json", directory_ / "config.json");
  }

  // The message of the error that loading the rewritten model throws.
  std::string load_error() {
    try {
      const ModelConfig config = ModelConfig::from_file(directory_ / "config.json");
      const SafetensorsCheckpoint checkpoint(directory_);
      load_model_weights(checkpoint, config, {0, config.num_experts});
    } catch (const Error& error) {
      return error.what();
    }
    return "(no error)";
  }

  std::filesystem::path directory_;
};

void replace_shape(std::vector<NamedTensor>& tensors, const std::string& name, const Shape& shape) {
  for (auto& named : tensors) {
    if (named.name == name) named.tensor = Tensor::zeros(shape);
  }
}

void remove_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const NamedTensor& named) { return named.name == name; });
}

TEST_F(ArchitectureBadInput, Mxfp4BlocksOfTheWrongShapeAreRefused) {
  // gpt_oss_mxfp4: D = 64, F = 32, E = 4: gate_up blocks [4, 64, 2, 16].
  const std::string name = "model.layers.1.mlp.experts.gate_up_proj_blocks";
  rewrite("gpt_oss_mxfp4", [&](auto& tensors) { replace_shape(tensors, name, {4, 64, 1, 32}); });
  const std::string message = load_error();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("[4, 64, 1, 32]"), std::string::npos) << message;
  EXPECT_NE(message.find("[4, 64, 2, 16]"), std::string::npos) << message;
}

TEST_F(ArchitectureBadInput, Mxfp4ScalesOfTheWrongShapeAreRefused) {
  const std::string name = "model.layers.0.mlp.experts.down_proj_scales";  // [E, D, F / 32] = [4, 64, 1]
  rewrite("gpt_oss_mxfp4", [&](auto& tensors) { replace_shape(tensors, name, {4, 64, 2}); });
  const std::string message = load_error();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("[4, 64, 2]"), std::string::npos) << message;
  EXPECT_NE(message.find("[4, 64, 1]"), std::string::npos) << message;
}

TEST_F(ArchitectureBadInput, AMissingSinksTensorIsRefused) {
  const std::string name = "model.layers.1.self_attn.sinks";
  rewrite("gpt_oss_f32", [&](auto& tensors) { remove_tensor(tensors, name); });
  const std::string message = load_error();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("missing"), std::string::npos) << message;
  EXPECT_NE(message.find("expected shape [4]"), std::string::npos) << message;
}

TEST_F(ArchitectureBadInput, AMissingSharedExpertTensorIsRefused) {
  const std::string name = "model.layers.2.mlp.shared_expert.down_proj.weight";  // [D, Fs] = [64, 48]
  rewrite("qwen2_moe_f32_sharded", [&](auto& tensors) { remove_tensor(tensors, name); });
  const std::string message = load_error();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("expected shape [64, 48]"), std::string::npos) << message;
}

TEST_F(ArchitectureBadInput, ASharedExpertGateOfTheWrongShapeIsRefused) {
  const std::string name = "model.layers.0.mlp.shared_expert_gate.weight";  // [1, D]
  rewrite("qwen2_moe_f32_sharded", [&](auto& tensors) { replace_shape(tensors, name, {64}); });
  const std::string message = load_error();
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find("has shape [64]"), std::string::npos) << message;
  EXPECT_NE(message.find("[1, 64]"), std::string::npos) << message;
}

TEST_F(ArchitectureBadInput, AnUnknownLayerTypeIsRefused) {
  std::ifstream in(kFixtures / "gpt_oss_f32" / "config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  config["layer_types"][1] = "chunked_attention";
  std::ofstream(directory_ / "config.json") << config.dump(2);
  try {
    ModelConfig::from_file(directory_ / "config.json");
    FAIL() << "an unknown layer type was accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("layer_types"), std::string::npos) << message;
    EXPECT_NE(message.find("\"chunked_attention\""), std::string::npos) << message;
    EXPECT_NE(message.find("sliding_attention"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace temoe
