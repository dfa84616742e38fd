// The avx2 build of the SIMD kernels (see isa_kernels.inl).
#define SUPCON_ISA isa_avx2
#define SUPCON_ISA_NAME "avx2"
#define SUPCON_VEC 8
#define SUPCON_MR 6
#define SUPCON_NV 2
#define SUPCON_LOSS_MR 4
#define SUPCON_LOSS_NV 2
#include "isa_kernels.inl"
