/*
Kernel development file (llm.c dev/cuda style): the backward of the *general* SupCon case
(mode 'one', or an extra contrast set), where dZ needs both G Z_C (anchor side) and G^T Z_A
(contrast side). Versions:

  1  two passes (the library's choice): the anchor pass, then a contrast pass that recomputes
     the scores with the roles swapped; every block owns its output rows, no atomics.
  2  one pass with atomics: the anchor pass also forms G^T Z_A per tile and atomicAdds it into
     the contrast rows (saves one score recomputation, 2 A N D flops, for N D A / kRows float
     atomics and a run-to-run varying summation order). SIMT float32 engine only.

Each version is checked against the CPU core (itself held to a float64 reference) and then
timed with CUDA events (the backward only; inputs uploaded and the forward run once).

Build, GPU (from the repository root, or let CMake build it: target cuda_dev_general_backward
when SUPCON_BUILD_TESTS=ON):
  cmake -S . -B build-cpu -DSUPCON_CUDA=OFF && cmake --build build-cpu -j
  nvcc -O3 -std=c++17 -arch=sm_90 -Inative/include -Inative/core -Inative/cuda \
       native/cuda/dev/general_backward.cu build-cpu/libsupcon_core.a -o general_backward
Build, CPU emulator (correctness only; target cuda_dev_general_backward_emu):
  g++ -O2 -std=c++17 -fno-strict-aliasing -Inative/include -Inative/core -Inative/cuda \
      native/cuda/dev/general_backward_emu.cpp build-cpu/libsupcon_core.a -lpthread -o general_backward_emu
Run:
  ./general_backward [--sizes 4096,16384,65536] [--dim 128] [--reps 3] [--check-limit 8192] [--json FILE]
  (sizes up to --check-limit are also compared with the CPU core; larger ones with version 1)
*/
#if !defined(SUPCON_KERNEL_NS)
#define SUPCON_KERNEL_NS cuda_kernels_dev
#define SUPCON_CUDA_IMPL_NS cuda_dev
#endif
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "loss_cuda_impl.h"

namespace supcon {
namespace SUPCON_KERNEL_NS {

struct AtomicTileProblem : TileProblem {
  float* dzCols = nullptr;     // [colRowsWithGrad, ldz] receives G^T . rows by atomicAdd
  int64_t colRowsWithGrad = 0; // feature rows among the columns (extra rows get no gradient)
  int dim = 0;
};

// out2[c][d] = sum_r G[r][c] rows[r][d0 + d] for the tile's columns, added atomically.
template <typename T>
__device__ void accumulateColumnsAtomic(typename SimtEngine<T>::Shared& sh, const AtomicTileProblem& p,
                                        int64_t rowBase, int64_t colBase, int d0) {
  constexpr int CR = T::kCols / 16, TO = T::kThreadOutCols, K = T::kStep, DC = T::kDChunk;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float acc[CR][TO];
  for (int i = 0; i < CR; ++i)
    for (int j = 0; j < TO; ++j) acc[i][j] = 0.0f;
  const float* A = p.rowZ + rowBase * p.ldz;
  for (int kb = 0; kb < T::kRows; kb += K) {
    for (int e = tid; e < K * (DC / 4); e += kThreads) {
      const int k = e / (DC / 4), q = e % (DC / 4);
      const int col = d0 + 4 * q;
      const float4 v = col < p.ldz ? loadFloat4(A + int64_t(kb + k) * p.ldz + col) : make_float4(0, 0, 0, 0);
      storeFloat4(&sh.stage.z[k][4 * q], v);
    }
    __syncthreads();
    for (int k = 0; k < K; ++k) {
      float a[CR], b[TO];
      for (int i = 0; i < CR; ++i) a[i] = sh.gT[ty * CR + i][kb + k];  // G[row kb+k][col]
      for (int j = 0; j < TO; ++j) b[j] = sh.stage.z[k][tx * TO + j];
      for (int i = 0; i < CR; ++i)
        for (int j = 0; j < TO; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < CR; ++i) {
    const int64_t c = colBase + ty * CR + i;
    if (c >= p.colRowsWithGrad) continue;
    for (int j = 0; j < TO; ++j) {
      const int d = d0 + tx * TO + j;
      if (d < p.dim) atomicAdd(&p.dzCols[c * p.ldz + d], acc[i][j]);
    }
  }
}

// The anchor pass of the library (gradBlock with the SIMT engine) plus the atomic column product.
template <typename T>
__global__ void __launch_bounds__(kThreads) gradAtomicKernel(AtomicTileProblem p) {
  using E = SimtEngine<T>;
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
    accumulateColumnsAtomic<T>(*sh, p, rowBase, colBase, d0);
    __syncthreads();
  }
  E::storeOut(out, p, rowBase, d0, split);
}

}  // namespace SUPCON_KERNEL_NS

namespace SUPCON_CUDA_IMPL_NS {

// Version 2: one anchor pass; dz (zeroed) receives G^T Z_A atomically, then G Z_C at the anchors.
template <typename T>
Status runGeneralAtomic(const DeviceProblem& dp, DeviceArena& arena, const float4* stats, const float* weight,
                        float* dz) {
  const PreparedLoss& p = dp.p;
  const cudaStream_t s = dp.stream;
  const int D = int(p.dim);
  kern::AtomicTileProblem a;
  static_cast<kern::TileProblem&>(a) = tileOperands(dp, true, false);
  a.rows = p.anchors;
  a.cols = p.contrastRows;
  a.rowKey = dp.anchorRow;
  a.rowClass = dp.anchorClass;
  a.colClass = dp.contrastClass;
  a.rowStats = stats;
  a.rowWeight = weight;
  a.dzCols = dz;
  a.colRowsWithGrad = p.rows;
  a.dim = D;
  a.rowsPadded = roundUp(a.rows, T::kRows);
  a.colTiles = int(ceilDiv(a.cols, T::kCols));
  const int64_t rowBlocks = a.rowsPadded / T::kRows;
  const int dChunks = int(ceilDiv(D, T::kDChunk));
  a.ldPartial = int64_t(dChunks) * T::kDChunk;
  const SplitPlan plan = planSplits(rowBlocks * dChunks, a.colTiles, dp.dev);
  a.tilesPerSplit = plan.tilesPerSplit;
  SUPCON_RETURN_IF_ERROR(arena.alloc(&a.partialGrad, int64_t(plan.splits) * a.rowsPadded * a.ldPartial, "partials"));
  SUPCON_CUDA_CHECK(cudaMemsetAsync(dz, 0, size_t(p.rows) * dp.ldz * sizeof(float), s), "cudaMemset");
  auto kernel = &kern::gradAtomicKernel<T>;
  const size_t smem = sizeof(typename kern::SimtEngine<T>::Shared);
  SUPCON_RETURN_IF_ERROR(prepareKernel(kernel, smem, dp.dev, "the atomic gradient kernel"));
  SUPCON_LAUNCH(kernel, dim3(unsigned(rowBlocks), unsigned(dChunks), unsigned(plan.splits)), dim3(kern::kThreads),
                smem, s, a);
  SUPCON_CUDA_CHECK(cudaGetLastError(), "atomic gradient kernel launch");
  auto reduce = &kern::reduceSplitsKernel;
  SUPCON_LAUNCH(reduce, dim3(strideBlocks(a.rows * D, dp.dev)), dim3(kern::kThreads), 0, s, dz, dp.ldz, dp.anchorRow,
                1, a.partialGrad, plan.splits, a.rowsPadded, a.ldPartial, a.rows, D);
  SUPCON_CUDA_CHECK(cudaGetLastError(), "split reduction launch");
  arena.release(a.partialGrad);
  return Status::ok();
}

}  // namespace SUPCON_CUDA_IMPL_NS
}  // namespace supcon

using namespace supcon;
namespace impl = supcon::SUPCON_CUDA_IMPL_NS;
namespace kern = supcon::SUPCON_KERNEL_NS;

namespace {

struct Problem {
  LossSpec spec;
  LossInputs in;
  std::vector<float> x, extra;
  std::vector<int32_t> labels, extraLabels;
};

Problem makeProblem(int64_t n, int64_t dim, bool oneMode, uint32_t seed) {
  Problem pr;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  const int64_t batch = n / 2, extra = oneMode ? 0 : n / 4;
  pr.x.resize(size_t(batch * 2 * dim));
  for (auto& v : pr.x) v = g(rng);
  pr.extra.resize(size_t(extra * dim));
  for (auto& v : pr.extra) v = g(rng);
  pr.labels.resize(size_t(batch));
  for (auto& l : pr.labels) l = int32_t(rng() % 100);
  pr.extraLabels.resize(size_t(extra));
  for (auto& l : pr.extraLabels) l = int32_t(rng() % 100);
  pr.spec.normalize = true;
  pr.spec.contrastMode = oneMode ? ContrastMode::kOne : ContrastMode::kAll;
  pr.in.features = pr.x.data();
  pr.in.batch = batch;
  pr.in.views = 2;
  pr.in.dim = dim;
  pr.in.labels = pr.labels.data();
  pr.in.contrastRows = extra;
  pr.in.contrastFeatures = extra ? pr.extra.data() : nullptr;
  pr.in.contrastLabels = extra ? pr.extraLabels.data() : nullptr;
  return pr;
}

double relErr(const std::vector<float>& a, const std::vector<float>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::max(e, double(std::fabs(a[i] - ref[i])));
    m = std::max(m, double(std::fabs(ref[i])));
  }
  return e / std::max(m, 1e-30);
}

// Runs one version's backward `reps` times on an uploaded problem; returns the median ms.
template <typename F>
Status timeVersion(impl::CallContext& cx, F&& backwardOnce, int reps, double* ms) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    cudaEvent_t a, b;
    SUPCON_CUDA_CHECK(cudaEventCreate(&a), "event");
    SUPCON_CUDA_CHECK(cudaEventCreate(&b), "event");
    cudaEventRecord(a, cx.dp.stream);
    const Status st = backwardOnce();
    cudaEventRecord(b, cx.dp.stream);
    cudaEventSynchronize(b);
    float x = 0;
    cudaEventElapsedTime(&x, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    SUPCON_RETURN_IF_ERROR(st);
    t.push_back(x);
  }
  std::sort(t.begin(), t.end());
  *ms = t[t.size() / 2];
  return Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {4096, 16384, 65536};
  int64_t dim = 128, checkLimit = 8192;
  int reps = 3;
  const char* json = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sizes")) {
      sizes.clear();
      for (char* t = std::strtok(argv[i + 1], ","); t; t = std::strtok(nullptr, ",")) sizes.push_back(std::atoll(t));
    } else if (!std::strcmp(argv[i], "--dim")) dim = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--check-limit")) checkLimit = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json = argv[i + 1];
  }
  if (dim > 128) {
    std::fprintf(stderr, "this dev file instantiates the D <= 128 tiles only\n");
    return 2;
  }
  using T = kern::GradTileD128;
  int failures = 0;
  std::string out = "{\"dim\":" + std::to_string(dim) + ",\"results\":[";
  std::printf("%8s %10s %12s %12s %9s %14s %14s %14s\n", "N", "mode", "v1 2-pass ms", "v2 atomic ms", "v1/v2",
              "v1 err vs cpu", "v2 err vs cpu", "v2 err vs v1");
  bool firstRow = true;
  for (int64_t n : sizes)
    for (int oneMode = 1; oneMode >= 0; --oneMode) {
      Problem pr = makeProblem(n, dim, oneMode == 1, uint32_t(n + oneMode));
      RunOptions run;
      run.device = Device::kCuda;
      Status st = validate(pr.spec, pr.in);
      impl::CallContext cx;
      std::vector<float> g1(size_t(pr.x.size())), g2(g1.size()), cpu;
      double ms1 = 0, ms2 = 0;
      if (st.isOk()) st = impl::begin(pr.spec, pr.in, run, cx);
      if (st.isOk()) st = impl::uploadProblem(pr.spec, pr.in, cx.arena, &cx.dp);
      const detail::PreparedLoss& p = cx.dp.p;
      float4* stats = nullptr;
      float *w = nullptr, *dz = nullptr;
      double* posMean = nullptr;
      const std::vector<float> one(1, 1.0f);
      if (st.isOk()) st = cx.arena.alloc(&stats, p.anchors, "statistics");
      if (st.isOk()) st = cx.arena.alloc(&posMean, p.anchors, "positive means");
      if (st.isOk()) st = cx.arena.alloc(&dz, p.rows * cx.dp.ldz, "dz");
      if (st.isOk()) {
        const detail::CallVector<float> weights = detail::anchorWeights(pr.spec, p, one.data(), cx.host);
        st = impl::upload(cx.arena, &w, weights.data(), p.anchors, cx.dp.stream, "weights");
      }
      if (st.isOk()) st = impl::runForward(cx.dp, cx.arena, stats, posMean);
      auto version1 = [&]() -> Status {
        SUPCON_RETURN_IF_ERROR(impl::runGradPasses<T>(cx.dp, cx.arena, stats, w, dz, p.rows));
        return impl::runBackwardTail(cx.dp, cx.arena, w, dz, p.rows);
      };
      auto version2 = [&]() -> Status {
        SUPCON_RETURN_IF_ERROR(impl::runGeneralAtomic<T>(cx.dp, cx.arena, stats, w, dz));
        return impl::runBackwardTail(cx.dp, cx.arena, w, dz, p.rows);
      };
      if (st.isOk()) st = timeVersion(cx, version1, reps, &ms1);
      if (st.isOk()) st = impl::downloadGrad(cx, dz, g1.data(), nullptr);
      if (st.isOk()) st = impl::finish(cx);
      if (st.isOk()) st = timeVersion(cx, version2, reps, &ms2);
      if (st.isOk()) st = impl::downloadGrad(cx, dz, g2.data(), nullptr);
      if (st.isOk()) st = impl::finish(cx);
      double e1 = -1, e2 = -1, e12 = -1;
      if (st.isOk()) {
        e12 = relErr(g2, g1);
        if (n <= checkLimit) {
          cpu.resize(g1.size());
          std::vector<float> per(size_t(p.anchors));
          ForwardResult fr;
          st = forwardBackward(pr.spec, pr.in, RunOptions{}, per.data(), cpu.data(), &fr);
          if (st.isOk()) {
            e1 = relErr(g1, cpu);
            e2 = relErr(g2, cpu);
          }
        }
      }
      const bool ok = st.isOk() && e12 <= 1e-4 && e1 <= 1e-4 && e2 <= 1e-4;
      if (!ok) ++failures;
      std::printf("%8lld %10s %12.3f %12.3f %9.2f %14.2e %14.2e %14.2e %s\n", (long long)n,
                  oneMode ? "one" : "all+extra", ms1, ms2, ms2 > 0 ? ms1 / ms2 : 0.0, e1, e2, e12,
                  st.isOk() ? (ok ? "" : "MISMATCH") : st.message().c_str());
      std::fflush(stdout);
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "%s{\"n\":%lld,\"mode\":\"%s\",\"v1_two_pass_ms\":%.4f,\"v2_atomic_ms\":%.4f,\"v1_err\":%.3g,"
                    "\"v2_err\":%.3g,\"v2_vs_v1\":%.3g,\"ok\":%s}",
                    firstRow ? "" : ",", (long long)n, oneMode ? "one" : "all+extra", ms1, ms2, e1, e2, e12,
                    ok ? "true" : "false");
      out += buf;
      firstRow = false;
    }
  out += "]}\n";
  if (json) {
    if (FILE* f = std::fopen(json, "w")) {
      std::fputs(out.c_str(), f);
      std::fclose(f);
    }
  }
  std::printf("errors: max |grad - reference| / max |reference|; -1 = not compared (N above --check-limit)\n");
  return failures ? 1 : 0;
}
