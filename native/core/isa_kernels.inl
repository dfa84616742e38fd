// SIMD kernels written once with GCC/Clang vector extensions and compiled per instruction set:
// isa_avx512.cpp, isa_avx2.cpp and isa_generic.cpp include this file with SUPCON_ISA and
// SUPCON_VEC (floats per vector) defined, and their own -m flags. See simd.h for the contracts.
#include <cstdint>
#include <cstring>
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "simd.h"

#ifndef SUPCON_ISA
#error "define SUPCON_ISA and SUPCON_VEC before including isa_kernels.inl"
#endif

namespace supcon {
namespace SUPCON_ISA {
namespace {

constexpr int W = SUPCON_VEC;
typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vi loadi(const int32_t* p) { vi v; std::memcpy(&v, p, sizeof v); return v; }
inline vf splat(float x) { return vf{} + x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline float hsum(vf v) { float s = 0; for (int i = 0; i < W; ++i) s += v[i]; return s; }
inline float hmax(vf v) { float s = v[0]; for (int i = 1; i < W; ++i) s = v[i] > s ? v[i] : s; return s; }

// exp(x) with ~1 ulp error on [-87, 88]: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6
// polynomial (Cephes' coefficients), 2^n through the exponent bits. Exactly 0 below -87.3,
// clamped above 88 so that masked or weight-0 entries never produce Inf or NaN.
inline vf vexp(vf x) {
  vi underflow = x < -87.3f;
  x = x > 88.0f ? splat(88.0f) : x;
  x = x < -87.3f ? splat(-87.3f) : x;
  vf t = x * 1.44269504088896341f;
  vf n = (t + 12582912.0f) - 12582912.0f;  // round to nearest through the float mantissa
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3333452e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale = (vf)bits;
  vf y = p * scale;
  return underflow ? splat(0.0f) : y;
}

inline float sexp(float x) { return vexp(splat(x))[0]; }

// *p in every lane, as one broadcast load (a scalar load then a register broadcast would cost a
// shuffle per use, which the direct convolution kernels cannot afford).
inline vf bcast(const float* p) {
#if defined(__AVX512F__) && SUPCON_VEC == 16
  return (vf)_mm512_set1_ps(*p);
#elif defined(__AVX__) && SUPCON_VEC == 8
  return (vf)_mm256_broadcast_ss(p);
#else
  return splat(*p);
#endif
}

// ---------------------------------------------------------------------------------------------
// GEMM micro-kernel: MR x (NV*W) block of C from packed panels.
template <int MR, int NV>
void microKernelT(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                  float beta, int m, int n) {
  constexpr int NR = NV * W;
  vf acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vf{};
  for (int64_t k = 0; k < kc; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + v * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      vf av = splat(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
    a += MR;
    b += NR;
  }
  if (m == MR && n == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* cp = c + i * ldc + v * W;
        vf r = acc[i][v] * alpha;
        if (beta != 0.0f) r += load(cp) * beta;
        store(cp, r);
      }
    return;
  }
  float tmp[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) store(&tmp[i][v * W], acc[i][v] * alpha);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float r = tmp[i][j];
      if (beta != 0.0f) r += beta * c[i * ldc + j];
      c[i * ldc + j] = r;
    }
}

// ---------------------------------------------------------------------------------------------
// Loss tile epilogues.

constexpr float kAbsent = kMaskedScore * 0.5f;

void rowLogSumExp(const float* s, int64_t ld, int rows, int cols, float* m, float* l) {
  const vf lowest = splat(kMaskedScore);
  for (int i = 0; i < rows; ++i) {
    const float* row = s + i * ld;
    vf mx = lowest;
    int j = 0;
    for (; j + W <= cols; j += W) mx = vmax(mx, load(row + j));
    float tileMax = hmax(mx);
    for (; j < cols; ++j) tileMax = row[j] > tileMax ? row[j] : tileMax;
    if (tileMax <= kAbsent) continue;  // nothing present in this tile row
    float newMax = tileMax > m[i] ? tileMax : m[i];
    vf mv = splat(newMax);
    vf sum = vf{};
    for (j = 0; j + W <= cols; j += W) {
      vf x = load(row + j);
      vf e = vexp(x - mv);
      sum += x > kAbsent ? e : vf{};
    }
    float total = hsum(sum);
    for (; j < cols; ++j)
      if (row[j] > kAbsent) total += sexp(row[j] - newMax);
    l[i] = l[i] * sexp(m[i] - newMax) + total;
    m[i] = newMax;
  }
}

void colLogSumExp(const float* s, int64_t ld, int rows, int cols, float* m, float* l) {
  int j = 0;
  for (; j + W <= cols; j += W) {
    vf mx = splat(kMaskedScore);
    for (int i = 0; i < rows; ++i) mx = vmax(mx, load(s + i * ld + j));
    vf oldMax = load(m + j);
    vf newMax = vmax(mx, oldMax);
    vf sum = vf{};
    for (int i = 0; i < rows; ++i) {
      vf x = load(s + i * ld + j);
      vf e = vexp(x - newMax);
      sum += x > kAbsent ? e : vf{};
    }
    // Columns with nothing present keep (m, l) unchanged: exp(m - m) = 1 and sum = 0.
    store(l + j, load(l + j) * vexp(oldMax - newMax) + sum);
    store(m + j, newMax);
  }
  for (; j < cols; ++j) {
    float mx = kMaskedScore;
    for (int i = 0; i < rows; ++i) mx = s[i * ld + j] > mx ? s[i * ld + j] : mx;
    if (mx <= kAbsent) continue;
    float newMax = mx > m[j] ? mx : m[j];
    float total = 0;
    for (int i = 0; i < rows; ++i)
      if (s[i * ld + j] > kAbsent) total += sexp(s[i * ld + j] - newMax);
    l[j] = l[j] * sexp(m[j] - newMax) + total;
    m[j] = newMax;
  }
}

void maskPositives(const float* s, int64_t ld, int rows, int cols, const int32_t* rowClass,
                   const int32_t* colClass, float* out, int64_t ldOut) {
  const vf masked = splat(kMaskedScore);
  for (int i = 0; i < rows; ++i) {
    const float* row = s + i * ld;
    float* o = out + i * ldOut;
    const int32_t ci = rowClass[i];
    int j = 0;
    for (; j + W <= cols; j += W) store(o + j, loadi(colClass + j) == ci ? load(row + j) : masked);
    for (; j < cols; ++j) o[j] = colClass[j] == ci ? row[j] : kMaskedScore;
  }
}

// g = w (exp(x - lse) - match * exp(x - lseP)); lseP/classes only for L_in.
template <bool kIn, bool kSym>
void gradTileT(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col) {
  for (int i = 0; i < rows; ++i) {
    float* r = s + i * ld;
    const vf lseI = splat(row.lse[i]);
    const vf wI = splat(row.weight[i]);
    const vf lsePI = splat(kIn ? row.lsePositive[i] : 0.0f);
    const int32_t ci = kIn ? row.classes[i] : 0;
    int j = 0;
    for (; j + W <= cols; j += W) {
      vf x = load(r + j);
      vf g = wI * vexp(x - lseI);
      vi match{};
      if (kIn) {
        match = loadi(col ? col->classes + j : row.classes + j) == ci;  // classes of columns
        g -= match ? wI * vexp(x - lsePI) : vf{};
      }
      if (kSym) {
        vf wJ = load(col->weight + j);
        g += wJ * vexp(x - load(col->lse + j));
        if (kIn) g -= match ? wJ * vexp(x - load(col->lsePositive + j)) : vf{};
      }
      store(r + j, g);
    }
    for (; j < cols; ++j) {
      float x = r[j];
      float g = row.weight[i] * sexp(x - row.lse[i]);
      bool match = false;
      if (kIn) {
        match = (col ? col->classes[j] : row.classes[j]) == ci;
        if (match) g -= row.weight[i] * sexp(x - row.lsePositive[i]);
      }
      if (kSym) {
        g += col->weight[j] * sexp(x - col->lse[j]);
        if (kIn && match) g -= col->weight[j] * sexp(x - col->lsePositive[j]);
      }
      r[j] = g;
    }
  }
}

void gradTile(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col) {
  const bool in = row.lsePositive != nullptr;
  const bool sym = col != nullptr && col->weight != nullptr;
  if (in) {
    if (sym) gradTileT<true, true>(s, ld, rows, cols, row, col);
    else gradTileT<true, false>(s, ld, rows, cols, row, col);
  } else {
    if (sym) gradTileT<false, true>(s, ld, rows, cols, row, col);
    else gradTileT<false, false>(s, ld, rows, cols, row, col);
  }
}

// ---------------------------------------------------------------------------------------------
// Batch-norm passes over a row-major [rows, C] block (one row per pixel, NHWC), channel by
// channel in vectors of W with a scalar tail. Sums run in float over blocks of kFlushRows rows
// and are flushed into double, so long columns keep double-precision totals.

constexpr int64_t kFlushRows = 64;

template <bool kRelu>
inline vf maskedGrad(vf dy, vf y) { return kRelu ? (y > 0.0f ? dy : vf{}) : dy; }
template <bool kRelu>
inline float maskedGrad(float dy, float y) { return kRelu ? (y > 0.0f ? dy : 0.0f) : dy; }

void channelMoments(const float* z, int64_t rows, int64_t C, const float* shift, double* sum, double* sumSq) {
  int64_t c = 0;
  for (; c + W <= C; c += W) {
    const vf sh = load(shift + c);
    for (int64_t r0 = 0; r0 < rows; r0 += kFlushRows) {
      const int64_t r1 = r0 + kFlushRows < rows ? r0 + kFlushRows : rows;
      vf s = vf{}, s2 = vf{};
      for (int64_t r = r0; r < r1; ++r) {
        vf v = load(z + r * C + c) - sh;
        s += v;
        s2 += v * v;
      }
      for (int i = 0; i < W; ++i) {
        sum[c + i] += s[i];
        sumSq[c + i] += s2[i];
      }
    }
  }
  for (; c < C; ++c) {
    double s = 0, s2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double v = double(z[r * C + c]) - shift[c];
      s += v;
      s2 += v * v;
    }
    sum[c] += s;
    sumSq[c] += s2;
  }
}

template <bool kRelu>
void scaleShiftT(const float* z, const float* residual, int64_t rows, int64_t C, const float* scale,
                 const float* offset, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* zr = z + r * C;
    const float* rr = residual ? residual + r * C : nullptr;
    float* yr = y + r * C;
    int64_t c = 0;
    for (; c + W <= C; c += W) {
      vf v = load(zr + c) * load(scale + c) + load(offset + c);
      if (rr) v += load(rr + c);
      if (kRelu) v = v > 0.0f ? v : vf{};
      store(yr + c, v);
    }
    for (; c < C; ++c) {
      float v = zr[c] * scale[c] + offset[c];
      if (rr) v += rr[c];
      if (kRelu) v = v > 0.0f ? v : 0.0f;
      yr[c] = v;
    }
  }
}

void scaleShift(const float* z, const float* residual, int64_t rows, int64_t C, const float* scale,
                const float* offset, bool relu, float* y) {
  if (relu) scaleShiftT<true>(z, residual, rows, C, scale, offset, y);
  else scaleShiftT<false>(z, residual, rows, C, scale, offset, y);
}

template <bool kRelu>
void bnGradReduceT(const float* dy, const float* y, const float* z, int64_t rows, int64_t C, const float* center,
                   double* sumG, double* sumGZ) {
  int64_t c = 0;
  for (; c + W <= C; c += W) {
    const vf ce = load(center + c);
    for (int64_t r0 = 0; r0 < rows; r0 += kFlushRows) {
      const int64_t r1 = r0 + kFlushRows < rows ? r0 + kFlushRows : rows;
      vf s = vf{}, sz = vf{};
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r * C + c;
        vf g = maskedGrad<kRelu>(load(dy + o), load(y + o));
        s += g;
        sz += g * (load(z + o) - ce);
      }
      for (int i = 0; i < W; ++i) {
        sumG[c + i] += s[i];
        sumGZ[c + i] += sz[i];
      }
    }
  }
  for (; c < C; ++c) {
    double s = 0, sz = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r * C + c;
      const float g = maskedGrad<kRelu>(dy[o], y[o]);
      s += g;
      sz += double(g) * (double(z[o]) - center[c]);
    }
    sumG[c] += s;
    sumGZ[c] += sz;
  }
}

void bnGradReduce(const float* dy, const float* y, const float* z, int64_t rows, int64_t C, const float* center,
                  bool relu, double* sumG, double* sumGZ) {
  if (relu) bnGradReduceT<true>(dy, y, z, rows, C, center, sumG, sumGZ);
  else bnGradReduceT<false>(dy, y, z, rows, C, center, sumG, sumGZ);
}

template <bool kRelu>
void bnGradApplyT(const float* dy, const float* y, const float* z, int64_t rows, int64_t C, const float* a,
                  const float* b, const float* k, float* dz, float* dres) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    int64_t c = 0;
    for (; c + W <= C; c += W) {
      vf g = maskedGrad<kRelu>(load(dy + o + c), load(y + o + c));
      vf d = load(a + c) * g + load(b + c) * load(z + o + c) + load(k + c);
      store(dz + o + c, d);
      if (dres) store(dres + o + c, g);
    }
    for (; c < C; ++c) {
      const float g = maskedGrad<kRelu>(dy[o + c], y[o + c]);
      dz[o + c] = a[c] * g + b[c] * z[o + c] + k[c];
      if (dres) dres[o + c] = g;
    }
  }
}

void bnGradApply(const float* dy, const float* y, const float* z, int64_t rows, int64_t C, bool relu,
                 const float* a, const float* b, const float* k, float* dz, float* dres) {
  if (relu) bnGradApplyT<true>(dy, y, z, rows, C, a, b, k, dz, dres);
  else bnGradApplyT<false>(dy, y, z, rows, C, a, b, k, dz, dres);
}

// ---------------------------------------------------------------------------------------------
// Direct convolution for narrow outputs (see nn_conv_direct.cpp): no patch packing. The input is
// read in place as "runs": for a pixel with base offset b, run k is the contiguous slice
// x[b + runOff[k] .. + runLen) (with unit dilation, one filter row: fW taps x C channels).

// y[r][0:n] = sum_k sum_j x[base[r] + runOff[k] + j] * w[(k runLen + j) ldw + 0:n], r < m <= MR.
template <int MR, int NV>
void directConvTile(const float* x, const int64_t* base, int m, int64_t runs, const int64_t* runOff,
                    int64_t runLen, const float* w, int64_t ldw, float* y, int64_t ldy, int n) {
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int64_t k = 0; k < runs; ++k) {
    const float* q[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) q[r] = x + base[r < m ? r : 0] + runOff[k];
    const float* wk = w + k * runLen * ldw;
    int64_t j = 0;
    for (; j + 2 <= runLen; j += 2) {
      vf w0[NV], w1[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        w0[v] = load(wk + j * ldw + v * W);
        w1[v] = load(wk + (j + 1) * ldw + v * W);
      }
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const vf a0 = bcast(q[r] + j);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] += a0 * w0[v];
      }
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const vf a1 = bcast(q[r] + j + 1);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] += a1 * w1[v];
      }
    }
    if (j < runLen) {
      vf w0[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) w0[v] = load(wk + j * ldw + v * W);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const vf a0 = bcast(q[r] + j);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] += a0 * w0[v];
      }
    }
  }
  if (n == NV * W) {
    for (int r = 0; r < m; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) store(y + r * ldy + v * W, acc[r][v]);
    return;
  }
  float tmp[NV * W];
  for (int r = 0; r < m; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(tmp + v * W, acc[r][v]);
    for (int c = 0; c < n; ++c) y[r * ldy + c] = tmp[c];
  }
}

template <int MR, int NV>
void directConvRowsT(const float* x, const int64_t* base, int64_t rows, int64_t runs, const int64_t* runOff,
                     int64_t runLen, const float* w, int64_t ldw, float* y, int64_t ldy, int n) {
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const int m = static_cast<int>(rows - r0 < MR ? rows - r0 : MR);
    directConvTile<MR, NV>(x, base + r0, m, runs, runOff, runLen, w, ldw, y + r0 * ldy, ldy, n);
  }
}

void directConvRows(const float* x, const int64_t* base, int64_t rows, int64_t runs, const int64_t* runOff,
                    int64_t runLen, const float* w, int64_t ldw, float* y, int64_t ldy, int n) {
  switch ((n + W - 1) / W) {
    case 1: return directConvRowsT<10, 1>(x, base, rows, runs, runOff, runLen, w, ldw, y, ldy, n);
    case 2: return directConvRowsT<10, 2>(x, base, rows, runs, runOff, runLen, w, ldw, y, ldy, n);
    case 3: return directConvRowsT<8, 3>(x, base, rows, runs, runOff, runLen, w, ldw, y, ldy, n);
    default: return directConvRowsT<6, 4>(x, base, rows, runs, runOff, runLen, w, ldw, y, ldy, n);
  }
}

// dwT[i][c] += sum_p dy[p ldy + i] * x[base[p] + c], i < m <= MR output channels, c < NV*W
// consecutive patch columns (lanes past `lanes` are computed from neighbouring data and dropped).
template <int MR, int NV>
void directFilterGradTile(const float* x, const int64_t* base, int64_t pixels, const float* dy, int64_t ldy, int m,
                          float* dwT, int64_t ldw, int lanes) {
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vf{};
  for (int64_t p = 0; p < pixels; ++p) {
    const float* q = x + base[p];
    vf xv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) xv[v] = load(q + v * W);
    const float* d = dy + p * ldy;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vf g = bcast(d + (i < m ? i : 0));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += g * xv[v];
    }
  }
  float tmp[NV * W];
  for (int i = 0; i < m; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(tmp + v * W, acc[i][v]);
    float* o = dwT + i * ldw;
    for (int c = 0; c < lanes; ++c) o[c] += tmp[c];
  }
}

// dwT [N][K] += the filter gradient of a piece of pixels: K = runs * runLen patch columns (run k
// at x[base[p] + runOff[k]]), N output channels with dy rows of stride ldy.
void directFilterGrad(const float* x, const int64_t* base, int64_t pixels, int64_t runs, const int64_t* runOff,
                      int64_t runLen, const float* dy, int64_t ldy, int64_t N, float* dwT, int64_t K,
                      int64_t* shifted) {
  constexpr int NV = 3;
  for (int64_t k = 0; k < runs; ++k) {
    for (int64_t p = 0; p < pixels; ++p) shifted[p] = base[p] + runOff[k];
    for (int64_t j0 = 0; j0 < runLen; j0 += NV * W) {
      const int lanes = static_cast<int>(runLen - j0 < NV * W ? runLen - j0 : NV * W);
      if (j0) for (int64_t p = 0; p < pixels; ++p) shifted[p] += NV * W;
      // 8 x 3, 12 x 2 or 12 x 1 vectors of accumulators, by the width of this chunk of the run.
      const int mr = lanes > 2 * W ? 8 : 12;
      for (int64_t i0 = 0; i0 < N; i0 += mr) {
        const int m = static_cast<int>(N - i0 < mr ? N - i0 : mr);
        float* out = dwT + i0 * K + k * runLen + j0;
        if (lanes > 2 * W) directFilterGradTile<8, 3>(x, shifted, pixels, dy + i0, ldy, m, out, K, lanes);
        else if (lanes > W) directFilterGradTile<12, 2>(x, shifted, pixels, dy + i0, ldy, m, out, K, lanes);
        else directFilterGradTile<12, 1>(x, shifted, pixels, dy + i0, ldy, m, out, K, lanes);
      }
    }
  }
}

}  // namespace

const KernelTable& table() {
  static const KernelTable t = {
      SUPCON_ISA_NAME, SUPCON_MR, SUPCON_NV * W, &microKernelT<SUPCON_MR, SUPCON_NV>,
      &rowLogSumExp,   &colLogSumExp, &maskPositives, &gradTile,
      W,               &microKernelT<SUPCON_MR, 1>,
      &channelMoments, &scaleShift,   &bnGradReduce,  &bnGradApply,
      &directConvRows, &directFilterGrad,
  };
  return t;
}

}  // namespace SUPCON_ISA
}  // namespace supcon
