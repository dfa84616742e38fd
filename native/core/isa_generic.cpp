// The generic build of the SIMD kernels (see isa_kernels.inl).
#define SUPCON_ISA isa_generic
#define SUPCON_ISA_NAME "generic"
#define SUPCON_VEC 4
#define SUPCON_MR 6
#define SUPCON_NV 2
#define SUPCON_LOSS_MR 4
#define SUPCON_LOSS_NV 2
#include "isa_kernels.inl"
