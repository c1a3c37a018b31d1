#include "src/training/pretraining.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "src/checkpoint/checkpoint_error.hpp"
#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
#include "src/model/parameter_names.hpp"
#include "src/model/safetensors_writer.hpp"
#include "src/training/gradient_reduction.hpp"

namespace temoe {

namespace {

int world_rank(const TrainingCommunicators& communicators) { return communicators.world ? communicators.world->rank() : 0; }
int world_size(const TrainingCommunicators& communicators) { return communicators.world ? communicators.world->size() : 1; }

LearningRateScheduleConfig schedule_config(const PretrainingOptions& options) {
  LearningRateScheduleConfig config;
  config.kind = ScheduleKind::cosine;
  config.peak = options.learning_rate;
  config.minimum = options.min_learning_rate;
  config.warmup_steps = options.warmup_steps;
  config.total_steps = options.steps;
  return config;
}

data::SamplerOptions sampler_options(const PretrainingOptions& options) {
  data::SamplerOptions sampler;
  sampler.sequence_length = options.sequence_length;
  sampler.seed = options.seed;
  return sampler;
}

}  // namespace

void PretrainingOptions::validate(int world_size) const {
  const auto require = [](bool ok, const char* key, auto value, const char* expected) {
    if (!ok) TEMOE_FAIL("pretrain." << key << " = " << value << ": expected " << expected);
  };
  require(steps >= 1, "steps", steps, "at least 1");
  require(batch_size >= 1 && batch_size % world_size == 0, "batch_size", batch_size,
          ("a positive multiple of the world size " + std::to_string(world_size)).c_str());
  require(sequence_length >= 1, "sequence_length", sequence_length, "at least 1");
  require(learning_rate > 0, "learning_rate", learning_rate, "a positive rate");
  require(min_learning_rate >= 0 && min_learning_rate <= learning_rate, "min_learning_rate", min_learning_rate,
          "in [0, pretrain.learning_rate]");
  require(warmup_steps >= 0 && warmup_steps < steps, "warmup_steps", warmup_steps,
          ("0 or more and less than pretrain.steps = " + std::to_string(steps)).c_str());
  require(weight_decay >= 0, "weight_decay", weight_decay, "0 or more");
  require(beta1 >= 0 && beta1 < 1, "beta1", beta1, "in [0, 1)");
  require(beta2 >= 0 && beta2 < 1, "beta2", beta2, "in [0, 1)");
  require(gradient_clip >= 0, "grad_clip", gradient_clip, "0 (off) or a positive norm");
  require(load_balancing >= 0, "load_balancing", load_balancing, "0 or more");
  require(routing_locality >= 0, "routing_locality", routing_locality, "0 (off) or more");
  require(routing_locality == 0 || (locality_window >= 1 && sequence_length % locality_window == 0), "locality_window",
          locality_window, ("a divisor of pretrain.sequence_length = " + std::to_string(sequence_length)).c_str());
}

Pretrainer::Pretrainer(TrainingModel& model, const TrainingCommunicators& communicators,
                       const data::TokenDataset& dataset, const PretrainingOptions& options)
    : model_(model),
      communicators_(communicators),
      options_(options),
      sampler_(dataset, sampler_options(options)),
      schedule_(schedule_config(options)) {
  options_.validate(world_size(communicators));
  TEMOE_CHECK(dataset.vocab_size <= model.config.vocab_size,
              (dataset.path.empty() ? std::string("the token data") : dataset.path.string())
                  << " has vocab_size " << dataset.vocab_size << ", more than the model's " << model.config.vocab_size);
  // Decoupled weight decay on the matrices; norm weights (1-D) are not pulled towards 0.
  for (const auto& parameter : model.parameters.all.parameters()) {
    (parameter.value.rank() >= 2 ? decayed_ : not_decayed_).parameters().push_back(parameter);
  }
  AdamWConfig adam;
  adam.learning_rate = options.learning_rate;
  adam.beta1 = options.beta1;
  adam.beta2 = options.beta2;
  adam.epsilon = options.epsilon;
  adam.weight_decay = options.weight_decay;
  decayed_optimizer_ = std::make_unique<AdamW>(decayed_, adam);
  adam.weight_decay = 0.0;
  not_decayed_optimizer_ = std::make_unique<AdamW>(not_decayed_, adam);
  size_t decayed = 0, not_decayed = 0;
  for (const auto& parameter : model.parameters.all.parameters()) {
    AdamW& optimizer = parameter.value.rank() >= 2 ? *decayed_optimizer_ : *not_decayed_optimizer_;
    const size_t index = parameter.value.rank() >= 2 ? decayed++ : not_decayed++;
    first_moments_.push_back(optimizer.first_moments()[index]);
    second_moments_.push_back(optimizer.second_moments()[index]);
  }
}

ModelIdentity Pretrainer::model_identity() const {
  // The whole model's names and shapes, whatever slice of it this rank holds.
  std::vector<std::pair<std::string, Shape>> names;
  for (const auto& [name, shape] : expected_tensors(model_.config)) names.emplace_back(name, shape);
  return {model_.config.to_json().dump(), fingerprint_weights(names)};
}

Checkpoint Pretrainer::checkpoint(const std::string& config_text) const {
  const auto& all = model_.parameters.all.parameters();
  const size_t dense_count = model_.parameters.dense.parameters().size();
  // This rank's experts: value, first and second moment of each, in parameter order.
  std::vector<float> mine;
  for (size_t i = dense_count; i < all.size(); ++i) {
    for (const Tensor* tensor : {&all[i].value, &first_moments_[i], &second_moments_[i]}) {
      mine.insert(mine.end(), tensor->data(), tensor->data() + tensor->numel());
    }
  }
  std::vector<std::byte> gathered;
  Communicator* group = communicators_.expert_parallel;
  if (group && group->size() > 1) gathered = group->gather_v(std::as_bytes(std::span<const float>(mine)), 0);
  Checkpoint checkpoint;
  checkpoint.config = config_text;
  checkpoint.model = model_identity();
  checkpoint.step = step_count_;
  checkpoint.tokens = step_count_ * options_.batch_size * options_.sequence_length;
  // The data position is the step (the sampler is keyed by global sequence index); the same on
  // every rank.
  checkpoint.ranks.assign(static_cast<size_t>(world_size(communicators_)),
                          RankState{{options_.seed}, {step_count_ * options_.batch_size}});
  if (world_rank(communicators_) != 0) return checkpoint;

  ParameterSetState state;
  state.name = "model";
  state.has_optimizer = true;
  state.optimizer_step = decayed_optimizer_->step_count();
  const auto add = [&](const std::string& name, const Tensor& value, const Tensor& first, const Tensor& second) {
    state.parameter_names.push_back(name);
    state.values.push_back(value);
    state.first_moments.push_back(first);
    state.second_moments.push_back(second);
  };
  for (size_t i = 0; i < dense_count; ++i) add(all[i].name, all[i].value, first_moments_[i], second_moments_[i]);
  if (!group || group->size() == 1) {
    for (size_t i = dense_count; i < all.size(); ++i) add(all[i].name, all[i].value, first_moments_[i], second_moments_[i]);
  } else {
    // Rank r of the group holds experts [r * E / X, (r + 1) * E / X), listed layer by layer.
    const ModelConfig& config = model_.config;
    const int64_t per_rank = config.num_experts / group->size();
    const auto* data = reinterpret_cast<const float*>(gathered.data());
    size_t offset = 0;
    const auto take = [&](const Shape& shape) {
      Tensor tensor(shape);
      std::memcpy(tensor.data(), data + offset, static_cast<size_t>(tensor.numel()) * sizeof(float));
      offset += static_cast<size_t>(tensor.numel());
      return tensor;
    };
    for (int rank = 0; rank < group->size(); ++rank) {
      for (int64_t layer = 0; layer < config.num_layers; ++layer) {
        for (int64_t local = 0; local < per_rank; ++local) {
          for (const ExpertTensor which : {ExpertTensor::gate_proj, ExpertTensor::up_proj, ExpertTensor::down_proj}) {
            const Shape shape = expert_tensor_shape(config, which);
            Tensor value = take(shape), first = take(shape), second = take(shape);
            add(expert_tensor_name(config, layer, rank * per_rank + local, which), value, first, second);
          }
        }
      }
    }
    TEMOE_CHECK(offset * sizeof(float) == gathered.size(),
                "checkpoint: gathered " << gathered.size() << " bytes of experts, used " << offset * sizeof(float));
  }
  checkpoint.parameter_sets.push_back(std::move(state));
  return checkpoint;
}

void Pretrainer::restore(const Checkpoint& checkpoint) {
  check_model_identity(checkpoint, model_identity());
  const ParameterSetState& state = checkpoint.parameter_set("model");
  const std::string source = checkpoint.source.empty() ? std::string("checkpoint") : checkpoint.source.string();
  if (!state.has_optimizer) {
    throw CheckpointError(CheckpointProblem::incompatible, source + ": the 'model' parameters carry no optimizer state");
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < state.parameter_names.size(); ++i) index[state.parameter_names[i]] = i;
  auto& all = model_.parameters.all.parameters();
  // Check everything before changing anything.
  for (const auto& parameter : all) {
    const auto found = index.find(parameter.name);
    if (found == index.end()) {
      throw CheckpointError(CheckpointProblem::incompatible, source + ": no parameter '" + parameter.name + "'");
    }
    if (state.values[found->second].shape() != parameter.value.shape()) {
      throw CheckpointError(CheckpointProblem::incompatible,
                            source + ": '" + parameter.name + "' has shape " +
                                shape_string(state.values[found->second].shape()) + ", the model " +
                                shape_string(parameter.value.shape()));
    }
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const size_t stored = index.at(all[i].name);
    const auto bytes = static_cast<size_t>(all[i].value.numel()) * sizeof(float);
    std::memcpy(all[i].value.data(), state.values[stored].data(), bytes);
    std::memcpy(first_moments_[i].data(), state.first_moments[stored].data(), bytes);
    std::memcpy(second_moments_[i].data(), state.second_moments[stored].data(), bytes);
  }
  decayed_optimizer_->set_step_count(state.optimizer_step);
  not_decayed_optimizer_->set_step_count(state.optimizer_step);
  step_count_ = checkpoint.step;
}


StepReport Pretrainer::step() {
  const auto start = std::chrono::steady_clock::now();
  const data::SequenceRange slice =
      data::data_parallel_slice(options_.batch_size, world_rank(communicators_), world_size(communicators_));
  const data::SequenceBatch batch = sampler_.batch(step_count_, options_.batch_size, slice.first, slice.count);
  StepReport report;
  report.losses = compute_gradients(model_, communicators_, batch.tokens, batch.targets, batch.batch, batch.time,
                                    options_.batch_size * options_.sequence_length,
                                    {.load_balancing_coefficient = options_.load_balancing,
                                     .routing_locality_coefficient = options_.routing_locality,
                                     .locality_window = options_.locality_window});
  report.gradient_norm = options_.gradient_clip > 0
                             ? clip_global_gradient_norm(model_.parameters, communicators_, options_.gradient_clip)
                             : global_gradient_norm(model_.parameters, communicators_);
  report.learning_rate = schedule_.at(step_count_);
  // The norm is the same on every rank, so every rank skips or updates alike.
  report.skipped = !std::isfinite(report.gradient_norm);
  if (!report.skipped) {
    decayed_optimizer_->step(report.learning_rate);
    not_decayed_optimizer_->step(report.learning_rate);
  }
  report.step = ++step_count_;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

double unigram_entropy(const data::TokenDataset& dataset) {
  std::vector<double> counts(static_cast<size_t>(dataset.vocab_size), 0.0);
  for (const int32_t token : dataset.tokens) counts[static_cast<size_t>(token)] += 1.0;
  const double total = static_cast<double>(dataset.tokens.size());
  double entropy = 0.0;
  for (const double count : counts) {
    if (count > 0) entropy -= count / total * std::log(count / total);
  }
  return entropy;
}

void write_trained_model(const TrainingModel& model, const TrainingCommunicators& communicators,
                         const std::filesystem::path& directory) {
  const ModelConfig& config = model.config;
  const ModelWeights& weights = model.weights;
  // This rank's experts, flattened (layer, local expert, gate / up / down).
  std::vector<float> mine;
  for (const auto& layer : weights.layers) {
    for (const auto& expert : layer.experts) {
      for (const Tensor* tensor : {&expert.gate_proj, &expert.up_proj, &expert.down_proj}) {
        mine.insert(mine.end(), tensor->data(), tensor->data() + tensor->numel());
      }
    }
  }
  std::vector<std::byte> gathered;
  Communicator* group = communicators.expert_parallel;
  if (group && group->size() > 1) {
    gathered = group->gather_v(std::as_bytes(std::span<const float>(mine)), 0);
  } else {
    gathered.resize(mine.size() * sizeof(float));
    std::memcpy(gathered.data(), mine.data(), gathered.size());
  }
  if (world_rank(communicators) != 0) return;

  // Rank 0 of the world is rank 0 of its expert-parallel group: it received every expert, in
  // expert order (rank j of the group holds experts [j * E / X, (j + 1) * E / X)).
  const int group_size = group ? group->size() : 1;
  const int64_t per_rank = config.num_experts / group_size;
  const int64_t expert_floats = config.parameters_per_expert();
  TEMOE_CHECK(gathered.size() == static_cast<size_t>(config.num_layers * config.num_experts * expert_floats) * sizeof(float),
              "write_trained_model: gathered " << gathered.size() << " bytes of experts, expected "
                                               << config.num_layers * config.num_experts * expert_floats * 4);
  const auto* data = reinterpret_cast<const float*>(gathered.data());
  ModelWeights full = weights;  // the dense tensors, shared
  full.local_experts = {0, config.num_experts};
  for (auto& layer : full.layers) layer.experts.assign(static_cast<size_t>(config.num_experts), {});
  size_t offset = 0;
  for (int rank = 0; rank < group_size; ++rank) {
    for (int64_t layer = 0; layer < config.num_layers; ++layer) {
      for (int64_t local = 0; local < per_rank; ++local) {
        ExpertWeights& expert = full.layers[static_cast<size_t>(layer)].experts[static_cast<size_t>(rank * per_rank + local)];
        for (Tensor* tensor : {&expert.gate_proj, &expert.up_proj, &expert.down_proj}) {
          const Shape shape = tensor == &expert.down_proj ? Shape{config.hidden_size, config.expert_ffn_size}
                                                          : Shape{config.expert_ffn_size, config.hidden_size};
          *tensor = Tensor(shape);
          std::memcpy(tensor->data(), data + offset, static_cast<size_t>(tensor->numel()) * sizeof(float));
          offset += static_cast<size_t>(tensor->numel());
        }
      }
    }
  }
  std::filesystem::create_directories(directory);
  write_safetensors_checkpoint(directory, named_weights(config, full), DType::f32, 1);
  const nlohmann::json json = config.to_json();
  write_file_atomically(directory / "config.json", [&](std::ostream& stream) { stream << json.dump(2) << "\n"; });
}

}  // namespace temoe
