// The one GEMM of the project: packing + a register-blocked SIMD micro-kernel (simd.h).
// The fused loss and the convolution kernels both call it; operands describe themselves
// through pack() so convolutions can pack image patches directly (implicit im2col).
#pragma once
#include <cstdint>

namespace supcon {

// Register block of the selected micro-kernel.
struct GemmBlocking {
  int mr;  // rows of an A micro-panel
  int nr;  // columns of a B micro-panel
};
GemmBlocking gemmBlocking();

// Name of the selected SIMD path ("avx512", "avx2" or "generic").
const char* simdName();

// A (M x K). pack() writes rows [i0, i0+mc) x cols [k0, k0+kc) as ceil(mc/mr) micro-panels,
// each kc x mr with the mr row values of one k contiguous; rows past M are zero.
class GemmOperandA {
 public:
  virtual ~GemmOperandA() = default;
  virtual void pack(float* dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr) const = 0;
};

// B (K x N). pack() writes rows [k0, k0+kc) x cols [j0, j0+nc) as ceil(nc/nr) micro-panels,
// each kc x nr with the nr column values of one k contiguous; columns past N are zero.
class GemmOperandB {
 public:
  virtual ~GemmOperandB() = default;
  virtual void pack(float* dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr) const = 0;
};

// Dense matrix with element (r, c) at data[r * rowStride + c * colStride]: row-major,
// column-major (a transpose) or any strided view.
class StridedA final : public GemmOperandA {
 public:
  StridedA(const float* data, int64_t rows, int64_t cols, int64_t rowStride, int64_t colStride)
      : p_(data), rows_(rows), cols_(cols), rs_(rowStride), cs_(colStride) {}
  void pack(float* dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr) const override;

 private:
  const float* p_;
  int64_t rows_, cols_, rs_, cs_;
};

class StridedB final : public GemmOperandB {
 public:
  StridedB(const float* data, int64_t rows, int64_t cols, int64_t rowStride, int64_t colStride)
      : p_(data), rows_(rows), cols_(cols), rs_(rowStride), cs_(colStride) {}
  void pack(float* dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr) const override;

 private:
  const float* p_;
  int64_t rows_, cols_, rs_, cs_;
};

// C (M x N, row stride ldc) = alpha * A B + beta * C on the calling thread.
// beta == 0 overwrites C without reading it.
void gemm(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperandA& A, const GemmOperandB& B,
          float beta, float* C, int64_t ldc);

// The same, split over the thread pool (blocks of C rows and columns).
void gemmParallel(int64_t M, int64_t N, int64_t K, float alpha, const GemmOperandA& A,
                  const GemmOperandB& B, float beta, float* C, int64_t ldc);

// Row-major convenience: C = alpha * op(A) op(B) + beta * C, op = transpose when trans*.
// A is M x K (K x M if transA), B is K x N (N x K if transB).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool parallel);

}  // namespace supcon
