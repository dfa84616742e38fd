// Kernels of the fused SupCon loss (math: docs/loss.md; design: docs/cuda.md).
//
// One tile engine serves every pass. A block owns kRows "rows" and walks column tiles of
// kCols "columns"; for each tile it computes the scores S = (rows . cols^T) / tau, then
//  - forward: folds S into per-row running (max, sum) pairs, the online log-sum-exp over the
//    contrast set (and over the positives for L_in);
//  - backward: turns S into the gradient block G (exp(S - LSE) minus the L_in positive term,
//    times the anchor weight) and accumulates G . cols into the block's rows of dZ.
// Nothing of size rows x cols ever leaves the block. Which side carries the anchor statistics
// decides the pass: the anchor pass (rows = anchors), the contrast pass (rows = contrast rows,
// columns = anchors: G^T Z_A without atomics) and the symmetric pass (both sides: H = G + G^T).
//
// Engines: SimtEngine (float32 FMA, register tiles) and WmmaEngine (tensor cores, tf32 or bf16
// operands with float32 accumulation). The column range of a row block can be split over
// gridDim (forward: y, backward: z); each split writes its own partial result, merged in a fixed
// order by a small kernel, so results do not depend on scheduling.
#pragma once
#include <cstdint>

#include "portability.cuh"
#include "tile_traits.cuh"

namespace supcon {
namespace SUPCON_KERNEL_NS {

using bf16 = __nv_bfloat16;

// A tile pass over rows x cols. Operands are padded (tile_traits.cuh): [>= rows rounded up to
// kOperandRowPad, ldz] and zeros past the real data.
struct TileProblem {
  const float* rowZ = nullptr;
  const float* colZ = nullptr;
  const bf16* rowZb = nullptr;  // bf16 copies (tensor-core bf16 engine only)
  const bf16* colZb = nullptr;
  int64_t rows = 0, cols = 0;   // real counts
  int64_t rowsPadded = 0;       // row count of the partial outputs (a multiple of kRows)
  int ldz = 0;                  // operand row stride (a multiple of kOperandAlign)
  // Self-contrast identity: entry (r, c) is excluded iff rowKey[r] == colKey[c]. nullptr means
  // the index itself (the feature row number).
  const int32_t* rowKey = nullptr;
  const int32_t* colKey = nullptr;
  const int32_t* rowClass = nullptr;
  const int32_t* colClass = nullptr;
  // Anchor statistics (backward) of the side that holds anchors; nullptr where the side holds
  // none. Weights are 0 for anchors without positives.
  // Statistics (m, log l, mP, log lP) per anchor: the log-sum-exps as a reference and the log of
  // the sum of exp(s - reference), kept apart (docs/loss.md, "Numerics").
  const float4* rowStats = nullptr;
  const float* rowWeight = nullptr;
  const float4* colStats = nullptr;
  const float* colWeight = nullptr;
  float invTemperature = 1.0f;
  int variantIn = 0;
  int colTiles = 0;       // ceil(cols / kCols)
  int tilesPerSplit = 0;  // column tiles per split
  float4* partialStats = nullptr;  // forward: [splits][rowsPadded] (max, sum, maxP, sumP)
  double* partialScoreP = nullptr; // forward, L_out: [splits][rowsPadded] sums of the positives' scores
  float* partialGrad = nullptr;    // backward: [splits][rowsPadded][ldPartial]
  int64_t ldPartial = 0;
};

// ---- per-row/column metadata of a tile, in shared memory ------------------------------------
template <int N>
struct SideMeta {
  int32_t key[N];  // < 0: padding (rows -1, columns -2, so padding never matches padding)
  int32_t cls[N];
  float m[N], logl[N];    // log-sum-exp over A(i) = m + log l
  float weight[N];
  float mP[N], loglP[N];  // over P(i) (L_in)
};

template <int N>
__device__ __forceinline__ void loadSide(SideMeta<N>& m, int64_t base, int64_t count, const int32_t* key,
                                         const int32_t* cls, const float4* stats, const float* weight,
                                         int32_t paddingKey) {
  for (int i = threadIdx.x; i < N; i += kThreads) {
    const int64_t g = base + i;
    const bool real = g < count;
    m.key[i] = real ? (key ? key[g] : static_cast<int32_t>(g)) : paddingKey;
    m.cls[i] = real ? cls[g] : -3;
    const float4 st = real && stats ? stats[g] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    m.m[i] = st.x;
    m.logl[i] = st.y;
    m.mP[i] = st.z;
    m.loglP[i] = st.w;
    m.weight[i] = real && weight ? weight[g] : 0.0f;
  }
}

// ---- online log-sum-exp ----------------------------------------------------------------------
struct RunningStats {
  float m, l, mP, lP;  // running max and sum of exp(s - max), over A(i) and over P(i) (L_in)
  double sP;           // sum of the scores over P(i) (L_out)
};

__device__ __forceinline__ void mergeStats(float& m, float& l, float m2, float l2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) return;  // both empty
  l = l * SUPCON_FAST_EXP(m - mx) + l2 * SUPCON_FAST_EXP(m2 - mx);
  m = mx;
}

template <int N>
__device__ __forceinline__ void onlineUpdate(float& m, float& l, const float (&s)[N], const bool (&in)[N]) {
  float mx = -INFINITY;
  SUPCON_UNROLL
  for (int j = 0; j < N; ++j)
    if (in[j]) mx = fmaxf(mx, s[j]);
  if (mx > m) {  // m = -inf at the start: exp(-inf) = 0 and l is 0 anyway
    l *= SUPCON_FAST_EXP(m - mx);
    m = mx;
  }
  SUPCON_UNROLL
  for (int j = 0; j < N; ++j)
    if (in[j]) l += SUPCON_FAST_EXP(s[j] - m);
}

// Folds one tile of scores (as seen by this thread through `view`) into its running stats.
template <int kRowSlots, int kColSlots, int R, int C, typename View>
__device__ __forceinline__ void updateStats(RunningStats (&st)[kRowSlots], const View& view, const SideMeta<R>& rm,
                                            const SideMeta<C>& cm, float invT, bool variantIn) {
  SUPCON_UNROLL
  for (int i = 0; i < kRowSlots; ++i) {
    const int r = view.row(i);
    const int32_t rk = rm.key[r], rc = rm.cls[r];
    float s[kColSlots];
    bool in[kColSlots], pos[kColSlots];
    SUPCON_UNROLL
    for (int j = 0; j < kColSlots; ++j) {
      const int c = view.col(j);
      const int32_t ck = cm.key[c];
      s[j] = view.at(i, j) * invT;
      in[j] = rk >= 0 && ck >= 0 && rk != ck;
      pos[j] = in[j] && rc == cm.cls[c];
    }
    onlineUpdate(st[i].m, st[i].l, s, in);
    if (variantIn) {
      onlineUpdate(st[i].mP, st[i].lP, s, pos);
    } else {
      float tileSum = 0.0f;  // a few terms in float, then the running sum in double
      SUPCON_UNROLL
      for (int j = 0; j < kColSlots; ++j) tileSum += pos[j] ? s[j] : 0.0f;
      st[i].sP += double(tileSum);
    }
  }
}

// dL/ds for one entry, already times 1/tau (the chain rule of s = z.z/tau): the row side's term
// w_r (p_rc - X_rc) plus, when the columns are anchors too, the column side's w_c (p_cr - X_cr).
// The L_out positive term X is left to the class-sum kernels (docs/loss.md, "L_out shortcut").
template <int R, int C>
__device__ __forceinline__ float gradEntry(float s, int r, int c, const SideMeta<R>& rm, const SideMeta<C>& cm,
                                           bool variantIn, float invT) {
  const int32_t rk = rm.key[r], ck = cm.key[c];
  if (rk < 0 || ck < 0 || rk == ck) return 0.0f;
  const bool match = variantIn && rm.cls[r] == cm.cls[c];
  float g = 0.0f;
  const float wr = rm.weight[r];
  if (wr != 0.0f) {
    float t = SUPCON_FAST_EXP((s - rm.m[r]) - rm.logl[r]);
    if (match) t -= SUPCON_FAST_EXP((s - rm.mP[r]) - rm.loglP[r]);
    g += wr * t;
  }
  const float wc = cm.weight[c];
  if (wc != 0.0f) {
    float t = SUPCON_FAST_EXP((s - cm.m[c]) - cm.logl[c]);
    if (match) t -= SUPCON_FAST_EXP((s - cm.mP[c]) - cm.loglP[c]);
    g += wc * t;
  }
  return g * invT;
}

template <int kRowSlots, int kColSlots, int R, int C, typename View>
__device__ __forceinline__ void gradTile(float (&g)[kRowSlots][kColSlots], const View& view, const SideMeta<R>& rm,
                                         const SideMeta<C>& cm, float invT, bool variantIn) {
  SUPCON_UNROLL
  for (int i = 0; i < kRowSlots; ++i)
    SUPCON_UNROLL
    for (int j = 0; j < kColSlots; ++j)
      g[i][j] = gradEntry(view.at(i, j) * invT, view.row(i), view.col(j), rm, cm, variantIn, invT);
}

__device__ __forceinline__ float4 loadFloat4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void storeFloat4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

// =============================================================================================
// SIMT engine: float32 FMA on a 16 x 16 thread grid; scores stay in registers.
// =============================================================================================
template <typename T>
struct SimtEngine {
  static constexpr bool kTensorCores = false;
  static constexpr int TM = T::kThreadRows, TN = T::kThreadCols, TO = T::kThreadOutCols, K = T::kStep;
  static constexpr int kRowSlots = TM, kColSlots = TN;
  static constexpr int kLdA = T::kRows + 4, kLdB = T::kCols + 4, kLdG = T::kRows + 4;
  static constexpr int kStageZ = T::kDChunk > 0 ? T::kDChunk : 4;

  struct Staging {  // one stage of D for the scores
    float a[K][kLdA];  // rows, transposed: a[k][row]
    float b[K][kLdB];  // columns, transposed: b[k][col]
  };
  union Stage {
    Staging scores;
    float z[K][kStageZ];  // a stage of column rows for the gradient product
  };
  struct Shared {
    Stage stage;
    float gT[T::kDChunk > 0 ? T::kCols : 1][kLdG];  // G^T of the tile (backward)
    SideMeta<T::kRows> rowMeta;
    SideMeta<T::kCols> colMeta;
  };

  struct Scores {
    float v[TM][TN];
  };
  struct View {
    const Scores& s;
    int ty, tx;
    __device__ int row(int i) const { return ty * TM + i; }
    __device__ int col(int j) const { return tx * TN + j; }
    __device__ float at(int i, int j) const { return s.v[i][j]; }
  };
  struct Out {
    float v[TM][TO > 0 ? TO : 1];
  };

  __device__ static int tx() { return threadIdx.x % 16; }
  __device__ static int ty() { return threadIdx.x / 16; }

  // S = rows . cols^T (not yet divided by tau) for rows [rowBase, +kRows), cols [colBase, +kCols).
  __device__ static View computeScores(Shared& sh, const TileProblem& p, int64_t rowBase, int64_t colBase,
                                       Scores& sc) {
    const int tid = threadIdx.x, tX = tx(), tY = ty();
    SUPCON_UNROLL
    for (int i = 0; i < TM; ++i)
      SUPCON_UNROLL
      for (int j = 0; j < TN; ++j) sc.v[i][j] = 0.0f;
    const float* A = p.rowZ + rowBase * p.ldz;
    const float* B = p.colZ + colBase * p.ldz;
    for (int k0 = 0; k0 < p.ldz; k0 += K) {
      for (int e = tid; e < T::kRows * (K / 4); e += kThreads) {
        const int r = e / (K / 4), q = e % (K / 4);
        const float4 v = loadFloat4(A + int64_t(r) * p.ldz + k0 + 4 * q);
        sh.stage.scores.a[4 * q + 0][r] = v.x;
        sh.stage.scores.a[4 * q + 1][r] = v.y;
        sh.stage.scores.a[4 * q + 2][r] = v.z;
        sh.stage.scores.a[4 * q + 3][r] = v.w;
      }
      for (int e = tid; e < T::kCols * (K / 4); e += kThreads) {
        const int c = e / (K / 4), q = e % (K / 4);
        const float4 v = loadFloat4(B + int64_t(c) * p.ldz + k0 + 4 * q);
        sh.stage.scores.b[4 * q + 0][c] = v.x;
        sh.stage.scores.b[4 * q + 1][c] = v.y;
        sh.stage.scores.b[4 * q + 2][c] = v.z;
        sh.stage.scores.b[4 * q + 3][c] = v.w;
      }
      __syncthreads();
      SUPCON_UNROLL
      for (int k = 0; k < K; ++k) {
        float a[TM], b[TN];
        SUPCON_UNROLL
        for (int i = 0; i < TM; i += 4) {
          const float4 v = loadFloat4(&sh.stage.scores.a[k][tY * TM + i]);
          a[i] = v.x, a[i + 1] = v.y, a[i + 2] = v.z, a[i + 3] = v.w;
        }
        SUPCON_UNROLL
        for (int j = 0; j < TN; j += 4) {
          const float4 v = loadFloat4(&sh.stage.scores.b[k][tX * TN + j]);
          b[j] = v.x, b[j + 1] = v.y, b[j + 2] = v.z, b[j + 3] = v.w;
        }
        SUPCON_UNROLL
        for (int i = 0; i < TM; ++i)
          SUPCON_UNROLL
          for (int j = 0; j < TN; ++j) sc.v[i][j] = fmaf(a[i], b[j], sc.v[i][j]);
      }
      __syncthreads();
    }
    return View{sc, tY, tX};
  }

  // Merges the 16 column threads of each row (one half-warp) and writes the split's stats.
  __device__ static void storeStats(Shared&, RunningStats (&st)[TM], const TileProblem& p, int64_t rowBase,
                                    int split) {
    SUPCON_UNROLL
    for (int i = 0; i < TM; ++i) {
      SUPCON_UNROLL
      for (int o = 8; o > 0; o >>= 1) {
        const float m = __shfl_xor_sync(0xffffffffu, st[i].m, o, 16);
        const float l = __shfl_xor_sync(0xffffffffu, st[i].l, o, 16);
        const float mP = __shfl_xor_sync(0xffffffffu, st[i].mP, o, 16);
        const float lP = __shfl_xor_sync(0xffffffffu, st[i].lP, o, 16);
        const double sP = __shfl_xor_sync(0xffffffffu, st[i].sP, o, 16);
        mergeStats(st[i].m, st[i].l, m, l);
        mergeStats(st[i].mP, st[i].lP, mP, lP);
        st[i].sP += sP;
      }
    }
    if (tx() == 0) {
      const int64_t base = int64_t(split) * p.rowsPadded + rowBase + ty() * TM;
      SUPCON_UNROLL
      for (int i = 0; i < TM; ++i) {
        p.partialStats[base + i] = make_float4(st[i].m, st[i].l, st[i].mP, st[i].lP);
        if (p.partialScoreP) p.partialScoreP[base + i] = st[i].sP;
      }
    }
  }

  __device__ static void storeG(Shared& sh, const View& v, const float (&g)[TM][TN]) {
    SUPCON_UNROLL
    for (int j = 0; j < TN; ++j)
      SUPCON_UNROLL
      for (int i = 0; i < TM; i += 4)
        storeFloat4(&sh.gT[v.col(j)][v.row(i)], make_float4(g[i][j], g[i + 1][j], g[i + 2][j], g[i + 3][j]));
  }

  __device__ static void zeroOut(Out& o) {
    SUPCON_UNROLL
    for (int i = 0; i < TM; ++i)
      SUPCON_UNROLL
      for (int j = 0; j < TO; ++j) o.v[i][j] = 0.0f;
  }

  // out += G (kRows x kCols, from gT) . cols[colBase.., d0 .. d0 + kDChunk).
  __device__ static void accumulate(Shared& sh, const TileProblem& p, int64_t colBase, int d0, Out& o) {
    const int tid = threadIdx.x, tX = tx(), tY = ty();
    const float* B = p.colZ + colBase * p.ldz;
    for (int kb = 0; kb < T::kCols; kb += K) {
      for (int e = tid; e < K * (T::kDChunk / 4); e += kThreads) {
        const int k = e / (T::kDChunk / 4), q = e % (T::kDChunk / 4);
        const int col = d0 + 4 * q;
        const float4 v = col < p.ldz ? loadFloat4(B + int64_t(kb + k) * p.ldz + col) : make_float4(0, 0, 0, 0);
        storeFloat4(&sh.stage.z[k][4 * q], v);
      }
      __syncthreads();
      SUPCON_UNROLL
      for (int k = 0; k < K; ++k) {
        float a[TM], b[TO];
        SUPCON_UNROLL
        for (int i = 0; i < TM; i += 4) {
          const float4 v = loadFloat4(&sh.gT[kb + k][tY * TM + i]);
          a[i] = v.x, a[i + 1] = v.y, a[i + 2] = v.z, a[i + 3] = v.w;
        }
        SUPCON_UNROLL
        for (int j = 0; j < TO; j += 4) {
          const float4 v = loadFloat4(&sh.stage.z[k][tX * TO + j]);
          b[j] = v.x, b[j + 1] = v.y, b[j + 2] = v.z, b[j + 3] = v.w;
        }
        SUPCON_UNROLL
        for (int i = 0; i < TM; ++i)
          SUPCON_UNROLL
          for (int j = 0; j < TO; ++j) o.v[i][j] = fmaf(a[i], b[j], o.v[i][j]);
      }
      __syncthreads();
    }
  }

  __device__ static void storeOut(const Out& o, const TileProblem& p, int64_t rowBase, int d0, int split) {
    float* base = p.partialGrad + (int64_t(split) * p.rowsPadded + rowBase + ty() * TM) * p.ldPartial + d0 + tx() * TO;
    SUPCON_UNROLL
    for (int i = 0; i < TM; ++i)
      SUPCON_UNROLL
      for (int j = 0; j < TO; j += 4)
        storeFloat4(base + int64_t(i) * p.ldPartial + j, make_float4(o.v[i][j], o.v[i][j + 1], o.v[i][j + 2], o.v[i][j + 3]));
  }
};

// =============================================================================================
// Tensor-core engine (wmma, sm_80+): scores and the gradient product on 16x16 fragments with
// float32 accumulation. Operands are tf32 (rounded from the float32 data) or bf16 copies.
// Scores go through shared memory (the fragment layout is opaque), stored transposed so that a
// warp's lanes read consecutive rows.
// =============================================================================================
#if SUPCON_HAS_TENSOR_CORES
namespace wmma = nvcuda::wmma;

struct Tf32Operands {
  using Elem = float;
  using GElem = float;
  static constexpr int K = 8;
  using RowFrag = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using ColFragT = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using GFrag = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using ZFrag = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  __device__ static const float* rows(const TileProblem& p) { return p.rowZ; }
  __device__ static const float* cols(const TileProblem& p) { return p.colZ; }
  template <typename F>
  __device__ static void round(F& f) {  // round to nearest (the hardware would truncate)
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
  }
  __device__ static float toG(float g) { return g; }
};

struct Bf16Operands {
  using Elem = bf16;
  using GElem = bf16;
  static constexpr int K = 16;
  using RowFrag = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
  using ColFragT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
  using GFrag = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major>;
  using ZFrag = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  __device__ static const bf16* rows(const TileProblem& p) { return p.rowZb; }
  __device__ static const bf16* cols(const TileProblem& p) { return p.colZb; }
  template <typename F>
  __device__ static void round(F&) {}
  __device__ static bf16 toG(float g) { return __float2bfloat16_rn(g); }
};

template <typename T, typename Op>
struct WmmaEngine {
  static constexpr bool kTensorCores = true;
  static constexpr int WR = T::kWarpRows, WC = T::kWarpCols;
  static constexpr int kScoreFrags = (T::kCols / 16) / WC;    // score fragments per warp
  static constexpr int kOutFrags = (T::kDChunk / 16) / WC;    // gradient fragments per warp
  static constexpr int kGroups = kThreads / T::kRows;         // threads per row in the epilogue
  static constexpr int kRowSlots = 1, kColSlots = T::kCols / kGroups;
  static constexpr int kLdS = T::kRows + 4;                   // floats: a multiple of 16 bytes
  static constexpr int kLdG = T::kRows + 16 / int(sizeof(typename Op::GElem));
  static_assert(kGroups * T::kRows * int(sizeof(float4) + sizeof(double)) <= T::kCols * kLdS * int(sizeof(float)),
                "stats merge scratch fits in the score tile");

  struct Shared {
    float sT[T::kCols][kLdS];  // scores, transposed: sT[col][row]
    typename Op::GElem gT[T::kDChunk > 0 ? T::kCols : 1][kLdG];
    SideMeta<T::kRows> rowMeta;
    SideMeta<T::kCols> colMeta;
  };
  struct Scores {};
  struct View {
    const float* sT;
    int r, group;
    __device__ int row(int) const { return r; }
    __device__ int col(int j) const { return group + kGroups * j; }
    __device__ float at(int, int j) const { return sT[col(j) * kLdS + r]; }
  };
  struct Out {
    typename Op::Acc f[kOutFrags > 0 ? kOutFrags : 1];
  };

  __device__ static int warpRow() { return (threadIdx.x / 32) % WR; }
  __device__ static int warpCol() { return (threadIdx.x / 32) / WR; }

  __device__ static View computeScores(Shared& sh, const TileProblem& p, int64_t rowBase, int64_t colBase, Scores&) {
    const int wr = warpRow(), wc = warpCol();
    typename Op::Acc acc[kScoreFrags];
    SUPCON_UNROLL
    for (int f = 0; f < kScoreFrags; ++f) wmma::fill_fragment(acc[f], 0.0f);
    const typename Op::Elem* A = Op::rows(p) + (rowBase + 16 * wr) * p.ldz;
    const typename Op::Elem* B = Op::cols(p) + (colBase + 16 * wc * kScoreFrags) * p.ldz;
    for (int k = 0; k < p.ldz; k += Op::K) {
      typename Op::RowFrag a;
      wmma::load_matrix_sync(a, A + k, p.ldz);
      Op::round(a);
      SUPCON_UNROLL
      for (int f = 0; f < kScoreFrags; ++f) {
        typename Op::ColFragT b;
        wmma::load_matrix_sync(b, B + int64_t(16 * f) * p.ldz + k, p.ldz);
        Op::round(b);
        wmma::mma_sync(acc[f], a, b, acc[f]);
      }
    }
    SUPCON_UNROLL
    for (int f = 0; f < kScoreFrags; ++f)
      wmma::store_matrix_sync(&sh.sT[16 * (wc * kScoreFrags + f)][16 * wr], acc[f], kLdS, wmma::mem_col_major);
    __syncthreads();
    return View{&sh.sT[0][0], int(threadIdx.x) % T::kRows, int(threadIdx.x) / T::kRows};
  }

  // Merges the kGroups threads of each row through shared memory and writes the split's stats.
  __device__ static void storeStats(Shared& sh, RunningStats (&st)[1], const TileProblem& p, int64_t rowBase,
                                    int split) {
    float4* scratch = reinterpret_cast<float4*>(&sh.sT[0][0]);
    double* scratchP = reinterpret_cast<double*>(scratch + kGroups * T::kRows);
    const int r = threadIdx.x % T::kRows, group = threadIdx.x / T::kRows;
    __syncthreads();  // the last tile's readers of sT are done
    scratch[group * T::kRows + r] = make_float4(st[0].m, st[0].l, st[0].mP, st[0].lP);
    scratchP[group * T::kRows + r] = st[0].sP;
    __syncthreads();
    if (group == 0) {
      RunningStats s = st[0];
      for (int g = 1; g < kGroups; ++g) {
        const float4 o = scratch[g * T::kRows + r];
        mergeStats(s.m, s.l, o.x, o.y);
        mergeStats(s.mP, s.lP, o.z, o.w);
        s.sP += scratchP[g * T::kRows + r];
      }
      const int64_t at = int64_t(split) * p.rowsPadded + rowBase + r;
      p.partialStats[at] = make_float4(s.m, s.l, s.mP, s.lP);
      if (p.partialScoreP) p.partialScoreP[at] = s.sP;
    }
  }

  __device__ static void storeG(Shared& sh, const View& v, const float (&g)[1][kColSlots]) {
    SUPCON_UNROLL
    for (int j = 0; j < kColSlots; ++j) sh.gT[v.col(j)][v.r] = Op::toG(g[0][j]);
  }

  __device__ static void zeroOut(Out& o) {
    SUPCON_UNROLL
    for (int f = 0; f < kOutFrags; ++f) wmma::fill_fragment(o.f[f], 0.0f);
  }

  __device__ static void accumulate(Shared& sh, const TileProblem& p, int64_t colBase, int d0, Out& o) {
    const int wr = warpRow(), wc = warpCol();
    const typename Op::Elem* B = Op::cols(p) + colBase * p.ldz;
    for (int k = 0; k < T::kCols; k += Op::K) {
      typename Op::GFrag a;
      wmma::load_matrix_sync(a, &sh.gT[k][16 * wr], kLdG);
      Op::round(a);
      SUPCON_UNROLL
      for (int f = 0; f < kOutFrags; ++f) {
        const int col = d0 + 16 * (wc * kOutFrags + f);
        if (col >= p.ldz) continue;  // past the data: the fragment stays 0 (warp-uniform)
        typename Op::ZFrag b;
        wmma::load_matrix_sync(b, B + int64_t(k) * p.ldz + col, p.ldz);
        Op::round(b);
        wmma::mma_sync(o.f[f], a, b, o.f[f]);
      }
    }
  }

  __device__ static void storeOut(const Out& o, const TileProblem& p, int64_t rowBase, int d0, int split) {
    const int wr = warpRow(), wc = warpCol();
    float* base = p.partialGrad + (int64_t(split) * p.rowsPadded + rowBase + 16 * wr) * p.ldPartial + d0;
    SUPCON_UNROLL
    for (int f = 0; f < kOutFrags; ++f)
      wmma::store_matrix_sync(base + 16 * (wc * kOutFrags + f), o.f[f], unsigned(p.ldPartial), wmma::mem_row_major);
  }
};
#else
// Device passes for pre-sm_80 targets: the type exists so that the kernels instantiate, and
// the kernel bodies discard it (the host never launches these on such devices).
struct Tf32Operands {};
struct Bf16Operands {};
template <typename T, typename Op>
struct WmmaEngine {
  static constexpr bool kTensorCores = true;
  struct Shared {  // host code of this pass names it; the host pass sees the real layout
    char unused;
  };
};
#endif

// =============================================================================================
// Block programs and kernels.
// =============================================================================================
template <typename T, typename E>
__device__ void forwardBlock(const TileProblem& p) {
  SUPCON_DYNAMIC_SMEM(typename E::Shared, sh);
  const int64_t rowBase = int64_t(blockIdx.x) * T::kRows;
  const int split = blockIdx.y;
  const int t0 = split * p.tilesPerSplit;
  const int t1 = t0 + p.tilesPerSplit < p.colTiles ? t0 + p.tilesPerSplit : p.colTiles;
  loadSide(sh->rowMeta, rowBase, p.rows, p.rowKey, p.rowClass, nullptr, nullptr, -1);
  RunningStats st[E::kRowSlots];
  SUPCON_UNROLL
  for (int i = 0; i < E::kRowSlots; ++i) st[i] = RunningStats{-INFINITY, 0.0f, -INFINITY, 0.0f, 0.0};
  typename E::Scores scores;
  for (int t = t0; t < t1; ++t) {
    const int64_t colBase = int64_t(t) * T::kCols;
    loadSide(sh->colMeta, colBase, p.cols, p.colKey, p.colClass, nullptr, nullptr, -2);
    // computeScores has a barrier before its result is used, which publishes the metadata.
    const typename E::View view = E::computeScores(*sh, p, rowBase, colBase, scores);
    updateStats<E::kRowSlots, E::kColSlots>(st, view, sh->rowMeta, sh->colMeta, p.invTemperature, p.variantIn != 0);
    __syncthreads();  // metadata and shared scores are rewritten by the next tile
  }
  E::storeStats(*sh, st, p, rowBase, split);
}

template <typename T, typename E>
__device__ void gradBlock(const TileProblem& p) {
  SUPCON_DYNAMIC_SMEM(typename E::Shared, sh);
  const int64_t rowBase = int64_t(blockIdx.x) * T::kRows;
  const int d0 = int(blockIdx.y) * T::kDChunk;
  const int split = blockIdx.z;
  const int t0 = split * p.tilesPerSplit;
  const int t1 = t0 + p.tilesPerSplit < p.colTiles ? t0 + p.tilesPerSplit : p.colTiles;
  loadSide(sh->rowMeta, rowBase, p.rows, p.rowKey, p.rowClass, p.rowStats, p.rowWeight, -1);
  typename E::Out out;
  E::zeroOut(out);
  typename E::Scores scores;
  for (int t = t0; t < t1; ++t) {
    const int64_t colBase = int64_t(t) * T::kCols;
    loadSide(sh->colMeta, colBase, p.cols, p.colKey, p.colClass, p.colStats, p.colWeight, -2);
    const typename E::View view = E::computeScores(*sh, p, rowBase, colBase, scores);
    float g[E::kRowSlots][E::kColSlots];
    gradTile(g, view, sh->rowMeta, sh->colMeta, p.invTemperature, p.variantIn != 0);
    E::storeG(*sh, view, g);
    __syncthreads();
    E::accumulate(*sh, p, colBase, d0, out);
    __syncthreads();
  }
  E::storeOut(out, p, rowBase, d0, split);
}

// grid (rowBlocks, splits); writes p.partialStats.
template <typename T, typename E>
__global__ void __launch_bounds__(kThreads) supconForwardKernel(TileProblem p) {
  if constexpr (E::kTensorCores && !SUPCON_HAS_TENSOR_CORES) {
    return;
  } else {
    forwardBlock<T, E>(p);
  }
}

// grid (rowBlocks, dChunks, splits); writes p.partialGrad.
template <typename T, typename E>
__global__ void __launch_bounds__(kThreads) supconGradKernel(TileProblem p) {
  if constexpr (E::kTensorCores && !SUPCON_HAS_TENSOR_CORES) {
    return;
  } else {
    gradBlock<T, E>(p);
  }
}

// =============================================================================================
// O(N D) kernels.
// =============================================================================================
template <typename V>
__device__ __forceinline__ V warpSum(V v) {
  SUPCON_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// z = x / max(||x||, 1e-12) in place, one warp per row (as normalizeRows in the core): the norm
// in double, so rows of any finite size work; norms[row] = ||x|| (unclamped).
__global__ void __launch_bounds__(kThreads) normalizeRowsKernel(float* z, double* norms, int64_t rows, int dim, int ldz) {
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* zr = z + row * ldz;
  double ss = 0;
  for (int k = lane; k < dim; k += 32) ss += double(zr[k]) * zr[k];
  ss = warpSum(ss);
  const double n = sqrt(ss);
  const double inv = 1.0 / fmax(n, 1e-12);
  for (int k = lane; k < dim; k += 32) zr[k] = static_cast<float>(double(zr[k]) * inv);
  if (lane == 0 && norms) norms[row] = n;
}

// In place, one warp per row: dz = (dz - z (z . dz)) / ||x||, or dz / 1e-12 where the norm was
// clamped (z = x / 1e-12 is a plain scaling there).
__global__ void __launch_bounds__(kThreads) normalizeRowsBackwardKernel(float* dz, const float* z, const double* norms,
                                                                      int64_t rows, int dim, int ldz) {
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* g = dz + row * ldz;
  const float* zr = z + row * ldz;
  if (norms[row] < 1e-12) {
    for (int k = lane; k < dim; k += 32) g[k] = static_cast<float>(double(g[k]) / 1e-12);
    return;
  }
  double dot = 0;
  for (int k = lane; k < dim; k += 32) dot += double(zr[k]) * g[k];
  dot = warpSum(dot);
  const double inv = 1.0 / norms[row];
  for (int k = lane; k < dim; k += 32) g[k] = static_cast<float>((double(g[k]) - double(zr[k]) * dot) * inv);
}

// dst[i] = src[index[i]] for rows of ldz floats.
__global__ void __launch_bounds__(kThreads) gatherRowsKernel(float* dst, const float* src, const int32_t* index,
                                                           int64_t rows, int ldz) {
  const int64_t n = rows * ldz;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kThreads) {
    const int64_t r = e / ldz, k = e % ldz;
    dst[e] = src[int64_t(index[r]) * ldz + k];
  }
}

__global__ void __launch_bounds__(kThreads) toBf16Kernel(bf16* dst, const float* src, int64_t n) {
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kThreads)
    dst[e] = __float2bfloat16_rn(src[e]);
}

// sums[cls[r]][k] += coef(r) z[r][k] in double, for rows with a class >= 0. coef: nullptr means
// 1 (class sums); otherwise weight[r] / positives[r] (the L_out positive-term coefficients).
__global__ void __launch_bounds__(kThreads) classSumsKernel(double* sums, const float* z, const int32_t* cls,
                                                          const float* weight, const int32_t* positives,
                                                          int64_t rows, int dim, int ldz) {
  const int64_t n = rows * dim;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kThreads) {
    const int64_t r = e / dim;
    const int k = int(e % dim);
    const int32_t c = cls[r];
    if (c < 0) continue;
    double coef = 1.0;
    if (weight) {
      if (positives[r] == 0 || weight[r] == 0.0f) continue;
      coef = double(weight[r]) / positives[r];
    }
    atomicAdd(&sums[int64_t(c) * dim + k], coef * double(z[r * ldz + k]));
  }
}

// L_out positive terms of the gradient for contrast rows (docs/loss.md):
//  dz[r] -= (1/tau) q[y_r]                            (row r as the positive of other anchors)
//  dz[r] -= (1/tau) c_s (classSum[y_r] - 2 z_r)       (row r as anchor slot s, c_s = w_s/|P_s|)
// where q[y] = sum over anchors s of class y of c_s z_s (the -c_s z_r removes the self pair).
// Rows [0, featureRows) are the feature rows (possibly anchors); rows past them are extra rows
// (never anchors; unlabeled ones, class -1, are nobody's positive).
__global__ void __launch_bounds__(kThreads) positiveGradKernel(float* dz, const float* zc, const double* sums,
                                                             const double* q, const int32_t* contrastClass,
                                                             const float* weight, const int32_t* positives,
                                                             int64_t rows, int64_t featureRows, int views, int oneMode,
                                                             int dim, int ldz, float invT) {
  const int64_t n = rows * dim;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kThreads) {
    const int64_t r = e / dim;
    const int k = int(e % dim);
    const int64_t c = contrastClass[r];
    if (c < 0) continue;
    double v = double(invT) * q[c * dim + k];
    const int64_t slot = r >= featureRows ? -1 : oneMode ? (r % views == 0 ? r / views : -1) : r;
    if (slot >= 0 && positives[slot] > 0 && weight[slot] != 0.0f) {
      const double coef = double(weight[slot]) / positives[slot];
      v += double(invT) * coef * (sums[c * dim + k] - 2.0 * double(zc[r * ldz + k]));
    }
    dz[r * ldz + k] -= static_cast<float>(v);
  }
}

// Merges the forward splits into the statistics (m, log l, mP, log lP) per anchor ((0, 0) for
// the positives of an anchor without any); with partialScoreP (L_out) the positives' mean
// score, 0 without positives.
__global__ void __launch_bounds__(kThreads) combineStatsKernel(float4* stats, double* positiveMean,
                                                             const float4* partial, const double* partialScoreP,
                                                             const int32_t* positives, int splits, int64_t rowsPadded,
                                                             int64_t anchors) {
  const int64_t a = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (a >= anchors) return;
  float m = -INFINITY, l = 0.0f, mP = -INFINITY, lP = 0.0f;
  double sP = 0;
  for (int s = 0; s < splits; ++s) {
    const float4 v = partial[int64_t(s) * rowsPadded + a];
    mergeStats(m, l, v.x, v.y);
    mergeStats(mP, lP, v.z, v.w);
    if (partialScoreP) sP += partialScoreP[int64_t(s) * rowsPadded + a];
  }
  stats[a] = lP > 0.0f ? make_float4(m, logf(l), mP, logf(lP)) : make_float4(m, logf(l), 0.0f, 0.0f);
  if (partialScoreP) positiveMean[a] = positives[a] > 0 ? sP / positives[a] : 0.0;
}

// out[map(r)][k] (= or +=) sum over splits of partial[s][r][k], in split order (deterministic).
__global__ void __launch_bounds__(kThreads) reduceSplitsKernel(float* out, int ldo, const int32_t* rowMap,
                                                             int accumulate, const float* partial, int splits,
                                                             int64_t rowsPadded, int64_t ldPartial, int64_t rows,
                                                             int dim) {
  const int64_t n = rows * dim;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kThreads) {
    const int64_t r = e / dim;
    const int k = int(e % dim);
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += partial[(int64_t(s) * rowsPadded + r) * ldPartial + k];
    float* dst = out + int64_t(rowMap ? rowMap[r] : r) * ldo + k;
    *dst = accumulate ? *dst + v : v;
  }
}

}  // namespace SUPCON_KERNEL_NS
}  // namespace supcon
