#pragma once
// Hyper-parameters of the option controllers and of their learning (DESIGN.md section 1).
#include <cstdint>
#include <string>

namespace temoe {

struct ControllerConfig {
  int64_t k_hat = 8;                 // experts in a held mask (k <= k_hat <= E)
  double eta = 0.02;                 // deliberation cost: the margin a switch must beat
  int64_t embedding_dim = 32;        // learned expert embeddings e_i
  int64_t set_dim = 32;              // z(w) = mean of phi(e_i)
  int64_t hidden = 64;               // width of the phi, termination and Q MLPs
  double termination_bias = -3.0;    // initial termination logit: about 5% switching
  double termination_bias_min = -8.0;  // the bias is kept in [min, max] after every update
  double termination_bias_max = 0.0;
  double gamma = 0.95;
  double lambda = 0.95;
  double value_coefficient = 0.01;   // weight of the Q regression (in PopArt's unit scale)
  // Rate at which Q's target statistics (PopArt) follow each batch's; 0 (the default) keeps them
  // at mean 0, scale 1: Q regresses on the raw returns. Off by default: on the topic testbed at
  // 0.1 the controller stopped switching within 150 steps (0% against 1.9% without), and the
  // corpus testbed's three-seed figures were measured without it (issue 15's note).
  double value_statistics_rate = 0.0;
  // Weight of the selection loss; 0: the selection is not learned and every reload, in training as
  // in evaluation, loads the greedy top-k_hat of the router's logits. Under Adam its size beyond
  // 0 matters little (the selection delta has no other loss); selection_learning_rate sets its pace.
  double selection_coefficient = 0.0;  // the router's reload won the ablation of issue 15
  double selection_learning_rate = 3e-4;  // AdamW rate of the selection delta (the rest: train.learning_rate)
  // Communication-aware option (a running cost beside the one-off eta): per token and layer, this
  // times the number of ranks other than the token's own that own experts of the held mask is
  // taken from that layer's reward, so the controllers can trade retention for traffic.
  double communication_cost = 0.0;
  // Logits subtracted from every expert of another rank whenever a mask is selected (t = 0 and each
  // reload): a fixed locality prior (src/learner/selection_locality.hpp), 0 = off.
  double selection_locality_bias = 0.0;
};

}  // namespace temoe
