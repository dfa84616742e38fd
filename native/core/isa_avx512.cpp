// The avx512 build of the SIMD kernels (see isa_kernels.inl).
#define SUPCON_ISA isa_avx512
#define SUPCON_ISA_NAME "avx512"
#define SUPCON_VEC 16
#define SUPCON_MR 12
#define SUPCON_NV 2
#define SUPCON_LOSS_MR 8
#define SUPCON_LOSS_NV 2
#include "isa_kernels.inl"
