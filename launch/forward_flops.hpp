#pragma once
// Floating-point operations of one forward, counted from the config (multiply-add = 2), and the
// list of GEMM shapes it runs, so benchmarks can time BLAS alone at exactly those shapes.
#include <cstdint>
#include <vector>

#include "src/model/model_config.hpp"

namespace temoe::launch {

struct GemmShape {
  int64_t m, n, k;
  int64_t repeat;  // how many times one forward runs this shape
};

double forward_flops(const ModelConfig& config, int64_t batch, int64_t time);
// Expert GEMMs assume perfectly even routing (B*T*k/E rows per expert).
std::vector<GemmShape> forward_gemm_shapes(const ModelConfig& config, int64_t batch, int64_t time);

}  // namespace temoe::launch
