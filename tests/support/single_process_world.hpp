#pragma once
// A world of one process for learner tests: sums and maxima are the values themselves, and
// anything that would need a peer is a logic error.
#include <stdexcept>

#include "parallel/communicator.hpp"

namespace temoe::testing {

class SingleProcessWorld final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend_name() const override { return "single process"; }
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  void all_reduce_max(std::span<int64_t>) override {}
  void all_to_all_v(std::span<const std::byte>, std::span<const size_t>, std::span<const size_t>, std::span<std::byte>,
                    std::span<const size_t>, std::span<const size_t>) override { unused(); }
  void all_to_all(std::span<const std::byte>, std::span<std::byte>, size_t) override { unused(); }
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
  void send(std::span<const std::byte>, int, int) override { unused(); }
  void receive(std::span<std::byte>, int, int) override { unused(); }
  std::vector<std::byte> gather_v(std::span<const std::byte> bytes, int) override { return {bytes.begin(), bytes.end()}; }
  std::unique_ptr<Communicator> split(int, int) override { unused(); }

 private:
  [[noreturn]] static void unused() { throw std::logic_error("the single-process test world has no peers"); }
};

}  // namespace temoe::testing
