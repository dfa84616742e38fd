// The dev file general_backward.cu compiled for the CPU emulator (correctness of version 2
// against version 1 and the CPU core; the emulator's times mean nothing).
#define SUPCON_CUDA_EMULATION 1
#include "general_backward.cu"
