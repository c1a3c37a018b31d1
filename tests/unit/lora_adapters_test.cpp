// LoRA adapters in PEFT's layout (src/model/lora_adapters.hpp): adapters written by the PyTorch
// reference (tests/reference/make_lora_fixtures.py, PEFT's tensor names) give its logits, on
// Mixtral (attention, experts, router), Qwen2-MoE (with the shared expert and a dense layer,
// rank-stabilised scaling) and gpt-oss (attention and router); PEFT's zero-B initialisation
// leaves the logits bit-identical; what temoe writes carries exactly the names the reference
// wrote and reads back to the same logits; bad adapter directories are refused naming the file,
// the key and what was expected.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"
#include "src/model/lora_adapters.hpp"
#include "src/model/moe_transformer.hpp"
#include "src/model/safetensors_file.hpp"
#include "src/model/safetensors_writer.hpp"
#include "tests/support/relative_difference.hpp"
#include "tests/support/scratch_directory_test.hpp"

namespace temoe {
namespace {

const std::filesystem::path kFixtures = TEMOE_FIXTURE_DIR;

struct Adapted {
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Backend> backend = make_backend(Device::cpu);
  std::unique_ptr<LocalExperts> experts;
  std::unique_ptr<MoeTransformer> model;
  TokenArray tokens;

  explicit Adapted(const std::string& base)
      : config(ModelConfig::from_file(kFixtures / base / "config.json")),
        weights(load_model_weights(SafetensorsCheckpoint(kFixtures / base), config, {0, config.num_experts})),
        tokens(read_token_npy(kFixtures / base / "tokens.npy")) {}

  std::vector<float> logits() {
    if (!model) {
      experts = std::make_unique<LocalExperts>(*backend, weights);
      model = std::make_unique<MoeTransformer>(config, weights, *backend, *experts);
    }
    return model->forward(tokens.ids, tokens.shape[0], tokens.shape[1]).to_vector();
  }
};

using testing::max_relative_difference;

struct LoraFixture {
  const char* name;
  const char* base;
};

class LoraReference : public ::testing::TestWithParam<LoraFixture> {};

TEST_P(LoraReference, AdaptersWrittenByThePyTorchReferenceGiveItsLogits) {
  const LoraFixture fixture = GetParam();
  Adapted adapted(fixture.base);
  const std::vector<float> base = adapted.logits();
  const LoraSettings settings = load_lora_adapters(kFixtures / "lora" / fixture.name, adapted.config, adapted.weights);
  const Tensor expected = read_float_npy(kFixtures / "lora" / fixture.name / "logits.npy");
  const std::vector<float> ours = adapted.logits();
  ASSERT_EQ(static_cast<int64_t>(ours.size()), expected.numel());
  const double error = max_relative_difference(ours, expected);
  RecordProperty("relative_error", std::to_string(error));
  EXPECT_LT(error, 1e-4) << fixture.name;
  // Not the base model's logits: the adapters were applied (the fixtures move them by > 0.1%).
  EXPECT_GT(max_relative_difference(base, expected), 1e-3) << fixture.name;
  // Switched off, the model is the base model again, bit for bit.
  adapted.model->set_adapters_enabled(false);
  EXPECT_EQ(adapted.logits(), base);
  EXPECT_GE(settings.rank, 1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LoraReference,
                         ::testing::Values(LoraFixture{"mixtral_all", "mixtral_f32"},
                                           LoraFixture{"qwen2_moe_rslora", "qwen2_moe_f32_sharded"},
                                           LoraFixture{"gpt_oss_attention_router", "gpt_oss_f32"}),
                         [](const auto& test) { return std::string(test.param.name); });

TEST(LoraAdapters, PeftsZeroInitialisationLeavesTheLogitsBitIdentical) {
  for (const char* base : {"mixtral_f32", "qwen2_moe_f32_sharded"}) {
    Adapted adapted(base);
    const std::vector<float> before = adapted.logits();
    LoraSettings settings;
    settings.targets = {LoraTarget::attention, LoraTarget::experts, LoraTarget::router};
    initialize_lora_adapters(adapted.config, adapted.weights, settings, 3);
    EXPECT_TRUE(adapted.weights.layers[0].q_lora.defined());
    EXPECT_TRUE(adapted.weights.layers[0].experts[0].down_lora.defined());
    EXPECT_EQ(adapted.logits(), before) << base;
  }
}

class LoraFiles : public testing::ScratchDirectoryTest {};

TEST_F(LoraFiles, WrittenAdaptersCarryPeftsNamesAndReadBackToTheSameLogits) {
  Adapted written("mixtral_f32");
  LoraSettings settings;
  settings.rank = 4;
  settings.alpha = 8;
  settings.targets = {LoraTarget::attention, LoraTarget::experts, LoraTarget::router};
  initialize_lora_adapters(written.config, written.weights, settings, 5, 0.05);
  const std::vector<float> logits = written.logits();
  const auto directory = directory_ / "adapters";
  write_lora_adapters(directory, written.config, written.weights, settings, "mixtral_f32");

  // The names the reference wrote for the same targets, independently.
  std::set<std::string> ours, reference;
  const SafetensorsFile written_file(directory / "adapter_model.safetensors");
  const SafetensorsFile reference_file(kFixtures / "lora" / "mixtral_all" / "adapter_model.safetensors");
  for (const auto& [name, entry] : written_file.entries()) ours.insert(name);
  for (const auto& [name, entry] : reference_file.entries()) reference.insert(name);
  EXPECT_EQ(ours, reference);

  Adapted read("mixtral_f32");
  const LoraSettings loaded = load_lora_adapters(directory, read.config, read.weights);
  EXPECT_EQ(loaded.rank, 4);
  EXPECT_EQ(loaded.alpha, 8);
  EXPECT_EQ(read.logits(), logits);
  const std::vector<float> base = Adapted("mixtral_f32").logits();
  EXPECT_NE(logits, base);
}

// Copies the Mixtral fixture's adapters, lets `edit` change them, and returns the error message.
class BadLoraFiles : public testing::ScratchDirectoryTest {
 protected:
  std::string refusal(const std::function<void(const std::filesystem::path&)>& edit) {
    const auto directory = directory_ / "bad";
    std::filesystem::remove_all(directory);
    std::filesystem::copy(kFixtures / "lora" / "mixtral_all", directory);
    edit(directory);
    Adapted adapted("mixtral_f32");
    try {
      load_lora_adapters(directory, adapted.config, adapted.weights);
    } catch (const Error& error) {
      return error.what();
    }
    ADD_FAILURE() << "the adapters were accepted";
    return {};
  }
  static void replace_in(const std::filesystem::path& path, const std::string& from, const std::string& to) {
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    std::ofstream(path) << text;
  }
  // Rewrites the safetensors file with `change` applied to its tensors.
  static void rewrite_tensors(const std::filesystem::path& directory,
                              const std::function<void(std::vector<NamedTensor>&)>& change) {
    const auto path = directory / "adapter_model.safetensors";
    std::vector<NamedTensor> tensors;
    {
      const SafetensorsFile file(path);
      for (const auto& [name, entry] : file.entries()) {
        Tensor values(entry.shape);
        file.read_as_float(name, values.data());
        tensors.push_back({name, values});
      }
    }
    change(tensors);
    write_safetensors_file(path, tensors, DType::f32);
  }
};

TEST_F(BadLoraFiles, AreRefusedNamingTheFileTheKeyAndWhatWasExpected) {
  std::string message = refusal([](const auto& d) { std::filesystem::remove(d / "adapter_config.json"); });
  EXPECT_NE(message.find("adapter_config.json"), std::string::npos) << message;

  message = refusal([](const auto& d) { replace_in(d / "adapter_config.json", "\"r\": 4", "\"r\": 0"); });
  EXPECT_NE(message.find("'r' = 0"), std::string::npos) << message;
  EXPECT_NE(message.find("positive integer"), std::string::npos) << message;

  message = refusal([](const auto& d) { replace_in(d / "adapter_config.json", "\"use_dora\": false", "\"use_dora\": true"); });
  EXPECT_NE(message.find("use_dora"), std::string::npos) << message;

  message = refusal([](const auto& d) { replace_in(d / "adapter_config.json", "\"r\": 4", "\"r\": 5"); });
  EXPECT_NE(message.find("has shape [4,"), std::string::npos) << message;
  EXPECT_NE(message.find("expected [5,"), std::string::npos) << message;

  message = refusal([](const auto& d) {
    rewrite_tensors(d, [](auto& tensors) { tensors.erase(tensors.begin()); });
  });
  EXPECT_NE(message.find("but no"), std::string::npos) << message;

  message = refusal([](const auto& d) {
    rewrite_tensors(d, [](auto& tensors) {
      tensors.push_back({"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", Tensor::zeros({4, 48})});
    });
  });
  EXPECT_NE(message.find("model.layers.9.self_attn.q_proj"), std::string::npos) << message;
  EXPECT_NE(message.find("no LoRA-able weight"), std::string::npos) << message;

  message = refusal([](const auto& d) {
    rewrite_tensors(d, [](auto& tensors) { tensors.front().tensor.data()[0] = std::nanf(""); });
  });
  EXPECT_NE(message.find("non-finite"), std::string::npos) << message;

  EXPECT_THROW(parse_lora_targets("attention,mlp"), Error);
  Adapted gpt_oss("gpt_oss_f32");
  LoraSettings settings;
  settings.targets = {LoraTarget::experts};
  try {
    initialize_lora_adapters(gpt_oss.config, gpt_oss.weights, settings, 1);
    ADD_FAILURE() << "expert adapters on gpt-oss were accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("fused"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace temoe
