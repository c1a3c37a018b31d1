#pragma once
// One GPU per rank: the GPU a rank drives is its index among the ranks on its node (its local
// rank: OMPI_COMM_WORLD_LOCAL_RANK under Open MPI, SLURM_LOCALID under srun; launch/ reads them).
// Only in builds with the CUDA backend.

namespace temoe {

// Makes GPU `local_rank` the current device of this process and returns it. Throws, naming both
// counts, when no GPU is visible or when the node runs more ranks than it has GPUs (ranks sharing
// a GPU would silently slow each other down and run out of its memory). Call it before
// make_backend(Device::cuda) and before any device allocation: the backend's cuBLAS handle and the
// caching allocator's blocks belong to the device current when they are created.
int select_local_gpu(int local_rank, int local_ranks);

}  // namespace temoe
