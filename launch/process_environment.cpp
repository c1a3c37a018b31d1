#include "launch/process_environment.hpp"

#include <cstdlib>
#include <string>

namespace temoe::launch {

namespace {
std::optional<int> integer_variable(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (const char* value = std::getenv(name)) {
      try {
        return std::stoi(value);
      } catch (...) {
      }
    }
  }
  return std::nullopt;
}
}  // namespace

ProcessEnvironment ProcessEnvironment::from_environment() {
  ProcessEnvironment environment;
  environment.world_rank = integer_variable({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}).value_or(0);
  environment.world_size = integer_variable({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}).value_or(1);
  environment.local_rank = integer_variable({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}).value_or(0);
  environment.local_size = integer_variable({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}).value_or(1);
  return environment;
}

bool ProcessEnvironment::launched_by_mpi() const {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_SIZE") != nullptr;
}

}  // namespace temoe::launch
