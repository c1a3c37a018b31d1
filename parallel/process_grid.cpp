#include "parallel/process_grid.hpp"

#include "src/core/error.hpp"

namespace temoe {

GridShape choose_grid_shape(int world_size, int requested_ep_size, int64_t num_experts) {
  TEMOE_CHECK(world_size >= 1, "world size " << world_size);
  GridShape shape;
  shape.world_size = world_size;
  if (requested_ep_size == 0) {
    for (int candidate = world_size; candidate >= 1; --candidate) {
      if (world_size % candidate == 0 && num_experts % candidate == 0) {
        shape.ep_size = candidate;
        break;
      }
    }
  } else {
    if (requested_ep_size < 0) TEMOE_FAIL("parallel.ep_size = " << requested_ep_size << ": expected 0 (automatic) or a positive count");
    if (num_experts % requested_ep_size != 0) {
      TEMOE_FAIL("parallel.ep_size = " << requested_ep_size << " does not divide the model's " << num_experts
                                       << " experts (E % ep_size must be 0)");
    }
    if (world_size % requested_ep_size != 0) {
      TEMOE_FAIL("parallel.ep_size = " << requested_ep_size << " does not divide the world of " << world_size
                                       << " ranks (the world must be a multiple of ep_size)");
    }
    shape.ep_size = requested_ep_size;
  }
  shape.dp_size = world_size / shape.ep_size;
  return shape;
}

ProcessGrid::ProcessGrid(Communicator& world, int requested_ep_size, int64_t num_experts)
    : world_(world), shape_(choose_grid_shape(world.size(), requested_ep_size, num_experts)), num_experts_(num_experts) {
  expert_parallel_ = world.split(dp_rank(), ep_rank());
  data_parallel_ = world.split(ep_rank(), dp_rank());
}

}  // namespace temoe
