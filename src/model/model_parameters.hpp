#pragma once
// A rank's model weights as named trainable parameters: gradient storage laid out as the weights,
// and ParameterSets whose values alias the weight tensors (an optimizer step updates the model in
// place) and whose gradients alias that storage. Names are the Hugging Face tensor names.
#include <vector>

#include "src/model/model_config.hpp"
#include "src/model/model_weights.hpp"
#include "src/model/safetensors_writer.hpp"
#include "src/tensor/parameter_set.hpp"

namespace temoe {

// Zero-filled tensors shaped as `weights` (same expert range). When the LM head is tied to the
// embedding, the gradients' lm_head shares the embedding gradient's storage, so both uses of the
// one matrix add into one gradient.
ModelWeights make_model_gradients(const ModelConfig& config, const ModelWeights& weights);

// Sets every gradient to zero.
void zero_model_gradients(ModelWeights& gradients);

struct ModelParameters {
  ParameterSet dense;    // embeddings, attention, norms, routers, LM head: the same on every rank
  ParameterSet experts;  // this rank's experts: the same on the ranks that hold the same experts
  ParameterSet all;      // dense, then experts (one optimizer over everything)
};

// Parameter sets over `weights` and `gradients` (aliases, not copies). A tied LM head appears once,
// as the embedding.
ModelParameters make_model_parameters(const ModelConfig& config, ModelWeights& weights, ModelWeights& gradients);

// The weights this rank holds, named and in Hugging Face module order, for
// write_safetensors_checkpoint (tensors alias the weights).
std::vector<NamedTensor> named_weights(const ModelConfig& config, const ModelWeights& weights);

}  // namespace temoe
