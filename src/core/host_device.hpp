#pragma once
// Marks a function that both the host compiler and nvcc compile, so that the CPU path and a CUDA
// kernel run the same arithmetic (the controllers' row functions, the counter-based draws).
#if defined(__CUDACC__)
#define TEMOE_HOST_DEVICE __host__ __device__
#else
#define TEMOE_HOST_DEVICE
#endif
