#pragma once
// What the launcher (mpirun, srun) tells a process about itself through the environment, read
// before MPI is initialised so that even early errors carry the rank.
#include <optional>
#include <string>

namespace temoe::launch {

struct ProcessEnvironment {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_size = 1;

  static ProcessEnvironment from_environment();
  bool launched_by_mpi() const;
};

}  // namespace temoe::launch
