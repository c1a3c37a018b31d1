#pragma once
// The world as D data-parallel groups x X expert-parallel ranks. World rank r sits in data-parallel
// group r / X at expert-parallel position r % X; an EP group holds one copy of every expert, rank j
// of it experts [j * E / X, (j + 1) * E / X).
#include <memory>

#include "parallel/communicator.hpp"

namespace temoe {

struct GridShape {
  int world_size = 1;
  int ep_size = 1;
  int dp_size = 1;
};

// Validates (or, for requested_ep_size = 0, chooses) the layout: X divides E and the world.
// Throws naming both numbers when they do not fit.
GridShape choose_grid_shape(int world_size, int requested_ep_size, int64_t num_experts);

class ProcessGrid {
 public:
  ProcessGrid(Communicator& world, int requested_ep_size, int64_t num_experts);

  const GridShape& shape() const { return shape_; }
  int world_rank() const { return world_.rank(); }
  int ep_rank() const { return world_.rank() % shape_.ep_size; }
  int dp_rank() const { return world_.rank() / shape_.ep_size; }
  int64_t experts_per_rank() const { return num_experts_ / shape_.ep_size; }

  Communicator& world() { return world_; }
  Communicator& expert_parallel() { return *expert_parallel_; }  // the X ranks sharing one expert set
  Communicator& data_parallel() { return *data_parallel_; }      // the D ranks holding the same experts

 private:
  Communicator& world_;
  GridShape shape_;
  int64_t num_experts_;
  std::unique_ptr<Communicator> expert_parallel_;
  std::unique_ptr<Communicator> data_parallel_;
};

}  // namespace temoe
