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
// The fused loss's tile kernels (native/core/loss_cpu.cpp; math: docs/loss.md).

// C[m x n] = alpha * sum_k a[k*lda + i] b[k*ldb + j] + beta * C: A read k-major (transposed
// operands and pre-packed panels need no packing), B row by row.
template <int MR, int NV>
void lossTileKernelT(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                     float alpha, float beta, int m, int n) {
  constexpr int NR = NV * W;
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vf{};
  for (int64_t k = 0; k < kc; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vf av = splat(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
    a += lda;
    b += ldb;
  }
  if (m == MR && n == NR) {
#pragma GCC unroll 16
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

// The same with A row by row (a[i * kLossMaxTile + k]): the broadcasts of one k come from MR
// rows, each walked sequentially, so a tile stored row-major needs no transpose either.
template <int MR, int NV>
void lossTileKernelRowsAT(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                          float beta, int m, int n) {
  constexpr int NR = NV * W;
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = vf{};
  for (int64_t k = 0; k < kc; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vf av = splat(a[i * kLossMaxTile]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
    a += 1;
    b += ldb;
  }
  if (m == MR && n == NR) {
#pragma GCC unroll 16
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

constexpr float kInf = __builtin_inff();
// Scores of one tile spanning at most this much use one exponent reference for the whole tile
// (one exp per entry for rows and columns alike): every present score is then >= ref - 64, so
// exp(s - ref) >= 1.6e-28 stays a normal float and no row's sum loses a term that matters.
constexpr float kSingleReferenceRange = 64.0f;

inline float hmin(vf v) { float s = v[0]; for (int i = 1; i < W; ++i) s = v[i] < s ? v[i] : s; return s; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }

// Merges tile statistics (reference tref, sum tsum) into running (ref, sum), n entries; entries
// with tsum == 0 (nothing present) keep their running values.
void mergeRunning(float* ref, float* sum, const float* tref, const float* tsum, int n) {
  for (int i = 0; i < n; i += W) {
    const vf r = load(ref + i), l = load(sum + i), tr = load(tref + i), tl = load(tsum + i);
    const vi present = tl > 0.0f;
    const vf next = vmax(r, tr);
    const vf safe = present ? next : vf{};
    const vf merged = l * vexp(r - safe) + tl * vexp(tr - safe);
    store(sum + i, present ? merged : l);
    store(ref + i, present ? next : r);
  }
}

// Tile statistics of one side, before they are merged into the running ones.
struct TileSums {
  alignas(64) float ref[kLossMaxTile];
  alignas(64) float sum[kLossMaxTile];
  alignas(64) float refP[kLossMaxTile];
  alignas(64) float sumP[kLossMaxTile];
  alignas(64) float scoreP[kLossMaxTile];
};

void foldInto(const ForwardSide& side, const TileSums& t, int n) {
  const int nv = (n + W - 1) / W * W;  // the side arrays and t are valid up to a whole vector
  mergeRunning(side.ref, side.sum, t.ref, t.sum, nv);
  if (side.refP) mergeRunning(side.refP, side.sumP, t.refP, t.sumP, nv);
  if (side.scoreSumP)
    for (int i = 0; i < n; ++i) side.scoreSumP[i] += double(t.scoreP[i]);
}

template <bool kIn, bool kSym>
void forwardTileT(const float* s, int64_t ld, int rows, int cols, const ForwardSide& row, const int32_t* colClasses,
                  const ForwardSide* col) {
  // Range of the present scores.
  vf hi = splat(-kInf), lo = splat(kInf);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; j += W) {
      const vf x = load(s + i * ld + j);
      hi = vmax(hi, x);
      lo = vmin(lo, x > -kInf ? x : splat(kInf));
    }
  const float tileMax = hmax(hi);
  if (tileMax == -kInf) return;  // nothing present
  const bool single = tileMax - hmin(lo) <= kSingleReferenceRange;

  TileSums rt, ct;
  const int colsV = cols;
  if (kSym)
    for (int j = 0; j < colsV; j += W) {
      store(ct.sum + j, vf{});
      store(ct.sumP + j, vf{});
      store(ct.scoreP + j, vf{});
    }
  // Rows.
  for (int i = 0; i < rows; ++i) {
    const float* r = s + i * ld;
    const vi ci = vi{} + row.classes[i];
    float ref = tileMax;
    if (!single) {
      vf mx = splat(-kInf);
      for (int j = 0; j < cols; j += W) mx = vmax(mx, load(r + j));
      ref = hmax(mx);
    }
    float refP = ref;
    if (kIn && !single) {
      vf mx = splat(-kInf);
      for (int j = 0; j < cols; j += W) mx = vmax(mx, loadi(colClasses + j) == ci ? load(r + j) : splat(-kInf));
      refP = hmax(mx);
    }
    const vf refV = splat(ref == -kInf ? 0.0f : ref), refPV = splat(refP == -kInf ? 0.0f : refP);
    vf acc{}, accP{}, accS{};
    for (int j = 0; j < cols; j += W) {
      const vf x = load(r + j);
      const vf e = vexp(x - refV);
      const vi match = (loadi(colClasses + j) == ci) & (x > -kInf);
      acc += e;
      if (kIn) {
        const vf eP = single ? e : vexp(x - refPV);
        accP += match ? eP : vf{};
        if (kSym && single) store(ct.sumP + j, load(ct.sumP + j) + (match ? e : vf{}));
      } else {
        accS += match ? x : vf{};
        if (kSym) store(ct.scoreP + j, load(ct.scoreP + j) + (match ? x : vf{}));
      }
      if (kSym && single) store(ct.sum + j, load(ct.sum + j) + e);
    }
    rt.ref[i] = ref;
    rt.sum[i] = hsum(acc);
    rt.refP[i] = refP;
    rt.sumP[i] = kIn ? hsum(accP) : 0.0f;
    rt.scoreP[i] = kIn ? 0.0f : hsum(accS);
  }
  for (int i = rows; i < (rows + W - 1) / W * W; ++i) rt.sum[i] = rt.sumP[i] = 0.0f, rt.ref[i] = rt.refP[i] = 0.0f;
  foldInto(row, rt, rows);
  if (!kSym) return;

  // Columns of a symmetric tile (the rows of the transposed block).
  if (single) {
    for (int j = 0; j < cols; j += W) {
      store(ct.ref + j, splat(tileMax));
      store(ct.refP + j, splat(tileMax));
    }
  } else {
    for (int j = 0; j < cols; j += W) {
      const vi cj = loadi(col->classes + j);
      vf mx = splat(-kInf), mxP = splat(-kInf);
      for (int i = 0; i < rows; ++i) {
        const vf x = load(s + i * ld + j);
        mx = vmax(mx, x);
        if (kIn) mxP = vmax(mxP, cj == row.classes[i] ? x : splat(-kInf));
      }
      const vf refV = mx > -kInf ? mx : vf{}, refPV = mxP > -kInf ? mxP : vf{};
      vf acc{}, accP{};
      for (int i = 0; i < rows; ++i) {
        const vf x = load(s + i * ld + j);
        acc += vexp(x - refV);
        if (kIn) accP += cj == row.classes[i] ? vexp(x - refPV) : vf{};
      }
      store(ct.ref + j, mx);
      store(ct.sum + j, acc);
      store(ct.refP + j, mxP);
      store(ct.sumP + j, accP);
    }
  }
  foldInto(*col, ct, cols);
}

void forwardTile(const float* s, int64_t ld, int rows, int cols, const ForwardSide& row, const int32_t* colClasses,
                 const ForwardSide* col) {
  const bool in = row.refP != nullptr;
  if (in) {
    if (col) forwardTileT<true, true>(s, ld, rows, cols, row, colClasses, col);
    else forwardTileT<true, false>(s, ld, rows, cols, row, colClasses, col);
  } else {
    if (col) forwardTileT<false, true>(s, ld, rows, cols, row, colClasses, col);
    else forwardTileT<false, false>(s, ld, rows, cols, row, colClasses, col);
  }
}

// g = w (exp((x - m) - log l) - match * exp((x - mP) - log lP)): the reference m is subtracted
// first, so that log l survives however large the scores are. mP, log lP, classes: L_in only.
template <bool kIn, bool kSym>
void gradTileT(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col) {
  const int32_t* __restrict colClasses = kIn ? col->classes : nullptr;
  const float* __restrict colWeight = kSym ? col->weight : nullptr;
  // The columns' statistics, transposed into vectors once per tile (strided in the stats array).
  alignas(64) float cm[kLossMaxTile], cl[kLossMaxTile], cmP[kLossMaxTile], clP[kLossMaxTile];
  if (kSym)
    for (int j = 0; j < cols; ++j) {
      const float* st = col->stats + 4 * j;
      cm[j] = st[0], cl[j] = st[1], cmP[j] = st[2], clP[j] = st[3];
    }
  for (int i = 0; i < rows; ++i) {
    float* __restrict r = s + i * ld;
    const float* st = row.stats + 4 * i;
    const vf mI = splat(st[0]), lI = splat(st[1]), mPI = splat(kIn ? st[2] : 0.0f), lPI = splat(kIn ? st[3] : 0.0f);
    const vf wI = splat(row.weight[i]);
    const int32_t ci = kIn ? row.classes[i] : 0;
    for (int j = 0; j < cols; j += W) {
      const vf x = load(r + j);
      vf g = wI * vexp((x - mI) - lI);
      vi match{};
      if (kIn) {
        match = loadi(colClasses + j) == ci;
        g -= match ? wI * vexp((x - mPI) - lPI) : vf{};
      }
      if (kSym) {
        const vf wJ = load(colWeight + j);
        g += wJ * vexp((x - load(cm + j)) - load(cl + j));
        if (kIn) g -= match ? wJ * vexp((x - load(cmP + j)) - load(clP + j)) : vf{};
      }
      store(r + j, g);
    }
  }
}

void gradTile(float* s, int64_t ld, int rows, int cols, const TileSide& row, const TileSide* col) {
  const bool in = row.variantIn;
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
      SUPCON_ISA_NAME,
      SUPCON_MR,
      SUPCON_NV * W,
      &microKernelT<SUPCON_MR, SUPCON_NV>,
      W,
      &microKernelT<SUPCON_MR, 1>,
      &channelMoments,
      &scaleShift,
      &bnGradReduce,
      &bnGradApply,
      &directConvRows,
      &directFilterGrad,
      SUPCON_LOSS_MR,
      SUPCON_LOSS_NV * W,
      &lossTileKernelT<SUPCON_LOSS_MR, SUPCON_LOSS_NV>,
      &lossTileKernelRowsAT<SUPCON_LOSS_MR, SUPCON_LOSS_NV>,
      &forwardTile,
      &gradTile,
  };
  return t;
}

}  // namespace SUPCON_ISA
}  // namespace supcon
