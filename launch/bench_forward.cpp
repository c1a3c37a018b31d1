// temoe bench forward: tokens/s and GFLOP/s of a forward, beside the GEMM library's own sgemm at
// the model's GEMM shapes (BLAS on the CPU, cuBLAS on a GPU) and the PyTorch reference on the same
// weights, tokens and threads, all in one run.
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "launch/command_line.hpp"
#include "launch/benchmarks.hpp"
#include "launch/forward_flops.hpp"
#include "launch/json_report.hpp"
#include "launch/model_session.hpp"
#include "launch/random_tokens.hpp"
#include "launch/reference_benchmark.hpp"
#include "src/core/error.hpp"
#include "src/io/npy_file.hpp"

namespace temoe::launch {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// BLAS alone at the forward's GEMM shapes: the rate the forward's GEMMs could reach.
double sgemm_gflops(const std::vector<GemmShape>& shapes, int repeats) {
  double flops = 0, seconds = 0;
  for (const auto& shape : shapes) {
    if (shape.m == 0) continue;
    Tensor a({shape.m, shape.k}), b({shape.n, shape.k}), c({shape.m, shape.n});
    a.fill(0.01f);
    b.fill(0.02f);
    const auto run = [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(shape.m), static_cast<int>(shape.n),
                  static_cast<int>(shape.k), 1.0f, a.data(), static_cast<int>(shape.k), b.data(),
                  static_cast<int>(shape.k), 0.0f, c.data(), static_cast<int>(shape.n));
    };
    run();
    const auto start = Clock::now();
    for (int r = 0; r < repeats; ++r) {
      for (int64_t i = 0; i < shape.repeat; ++i) run();
    }
    seconds += seconds_since(start);
    flops += 2.0 * static_cast<double>(shape.m * shape.n * shape.k * shape.repeat) * repeats;
  }
  return flops / seconds / 1e9;
}

// The same through the model's backend (cuBLAS on a GPU), timed to the device's completion.
double backend_gemm_gflops(Backend& backend, const std::vector<GemmShape>& shapes, int repeats) {
  double flops = 0, seconds = 0;
  const Device device = backend.device();
  for (const auto& shape : shapes) {
    if (shape.m == 0) continue;
    Tensor host_a({shape.m, shape.k}), host_b({shape.n, shape.k});
    host_a.fill(0.01f);
    host_b.fill(0.02f);
    const Tensor a = to_device(host_a, device), b = to_device(host_b, device);
    Tensor c({shape.m, shape.n}, device);
    backend.matmul_transposed(a, b, c, false);
    to_host(c.rows(0, 1));  // waits for the warm-up
    const auto start = Clock::now();
    for (int r = 0; r < repeats; ++r) {
      for (int64_t i = 0; i < shape.repeat; ++i) backend.matmul_transposed(a, b, c, false);
    }
    to_host(c.rows(0, 1));
    seconds += seconds_since(start);
    flops += 2.0 * static_cast<double>(shape.m * shape.n * shape.k * shape.repeat) * repeats;
  }
  return flops / seconds / 1e9;
}

}  // namespace

int bench_forward(const Arguments& arguments) {
  po::options_description options("temoe bench forward");
  options.add_options()
      ("model", po::value<std::string>(), "model directory")
      ("batch", po::value<int64_t>()->default_value(1), "sequences per forward")
      ("time", po::value<int64_t>()->default_value(512), "tokens per sequence")
      ("repeats", po::value<int>()->default_value(3), "timed forwards (after one warm-up)")
      ("seed", po::value<uint64_t>()->default_value(7), "seed of the random tokens")
      ("python", po::value<std::string>()->default_value("/usr/bin/python3"), "interpreter with torch for the reference")
      ("no-torch", "skip the PyTorch reference")
      ("json", po::value<std::string>(), "also write the figures to this JSON file");
  const auto parsed = parse_command_line("bench forward", arguments, options);
  if (parsed.help) {
    std::cout << command_help("temoe bench forward --model DIR [--json FILE]", options);
    return 0;
  }
  const auto& values = parsed.values;
  std::string model_dir = values.count("model") ? values["model"].as<std::string>()
                          : values.count("model.dir") ? values["model.dir"].as<std::string>() : "";
  if (model_dir.empty()) TEMOE_FAIL("temoe bench forward: --model DIR is required");
  apply_thread_settings(values);
  const int threads = omp_get_max_threads();
  const int64_t batch = values["batch"].as<int64_t>(), time = values["time"].as<int64_t>();
  const int repeats = values["repeats"].as<int>();
  if (batch < 1 || time < 1 || repeats < 1) TEMOE_FAIL("temoe bench forward: --batch, --time and --repeats must be positive");

  auto model = load_local_model(model_dir, parse_device(values["runtime.device"].as<std::string>()));
  const TokenArray tokens = random_tokens(batch, time, model->config.vocab_size, values["seed"].as<uint64_t>());

  model->transformer->forward(tokens.ids, batch, time);  // warm-up: page in weights, grow allocations
  const auto start = Clock::now();
  Tensor logits;
  for (int r = 0; r < repeats; ++r) logits = model->transformer->forward(tokens.ids, batch, time);
  to_host(logits.reshaped({batch * time, model->config.vocab_size}).rows(0, 1));  // a device finishes its queue
  const double seconds = seconds_since(start) / repeats;
  const double tokens_per_s = static_cast<double>(batch * time) / seconds;
  const double gflops = forward_flops(model->config, batch, time) / seconds / 1e9;
  const bool on_cpu = model->backend->device() == Device::cpu;
  const char* gemm_library = on_cpu ? "BLAS sgemm" : "cuBLAS sgemm";
  const double blas_gflops = on_cpu ? sgemm_gflops(forward_gemm_shapes(model->config, batch, time), repeats)
                                    : backend_gemm_gflops(*model->backend, forward_gemm_shapes(model->config, batch, time), repeats);

  double torch_rate = 0;
  if (!values.count("no-torch")) {
    const auto token_file = std::filesystem::temp_directory_path() / ("temoe-bench-tokens-" + std::to_string(::getpid()) + ".npy");
    write_token_npy(token_file, tokens);
    // The PyTorch reference on the same weights, tokens and thread count.
    torch_rate = run_reference_benchmark("bench_forward.py",
                                         "--model " + model_dir + " --tokens " + token_file.string() + " --threads " +
                                             std::to_string(threads) + " --repeats " + std::to_string(repeats),
                                         values["python"].as<std::string>());
    std::filesystem::remove(token_file);
  }
  std::printf("bench forward: %s, %lld x %lld tokens, %d threads\n", to_string(model->config.architecture).c_str(),
              static_cast<long long>(batch), static_cast<long long>(time), threads);
  std::printf("  temoe           %10.1f tokens/s  %7.2f GFLOP/s\n", tokens_per_s, gflops);
  std::printf("  %-15s %10s           %7.2f GFLOP/s at the model's GEMM shapes (temoe reaches %.0f%%)\n", gemm_library,
              "", blas_gflops, 100.0 * gflops / blas_gflops);
  if (torch_rate > 0) {
    std::printf("  PyTorch eager   %10.1f tokens/s  (temoe is %.2fx)\n", torch_rate, tokens_per_s / torch_rate);
  }
  if (values.count("json")) {
    write_json_report(values["json"].as<std::string>(),
                      {{"tokens_per_s", tokens_per_s},
                       {"gflops", gflops},
                       {"sgemm_gflops", blas_gflops},
                       {"device", to_string(model->backend->device())},
                       {"torch_tokens_per_s", torch_rate},
                       {"speedup_over_torch", torch_rate > 0 ? tokens_per_s / torch_rate : 0.0},
                       {"fraction_of_sgemm", gflops / blas_gflops},
                       {"threads", threads},
                       {"batch", batch},
                       {"time", time}});
  }
  return 0;
}

}  // namespace temoe::launch
