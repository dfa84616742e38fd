// Checks of a CUDA implementation of the loss against the float64 reference (reference.h) and
// the CPU core, shared by test_cuda_loss.cpp (the real GPU) and test_cuda_emu.cpp (the same
// kernel source on the CPU emulator). A Backend says how to call the implementation.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "reference.h"
#include "supcon/loss.h"

namespace supcon_cuda_test {

using namespace supcon;

struct Backend {
  const char* name = "";
  std::function<Status(const LossSpec&, const LossInputs&, const RunOptions&, float*, float*, ForwardResult*)> forward;
  std::function<Status(const LossSpec&, const LossInputs&, const RunOptions&, const float*, const float*, int64_t,
                       float*, BackwardResult*)>
      backward;
  // backward with the extra rows' gradient (contrastGrad [contrastRows, dim]).
  std::function<Status(const LossSpec&, const LossInputs&, const RunOptions&, const float*, const float*, int64_t,
                       float*, float*, BackwardResult*)>
      backwardContrast;
  // Sets SUPCON_CUDA_SPLITS (0: unset) for the next calls.
  static void forceSplits(int splits) {
    if (splits > 0) setenv("SUPCON_CUDA_SPLITS", std::to_string(splits).c_str(), 1);
    else unsetenv("SUPCON_CUDA_SPLITS");
  }
};

struct Problem {
  LossSpec spec;
  int64_t batch = 0, views = 1, dim = 0, extra = 0;
  bool labeled = true;
  std::vector<float> features, contrast;
  std::vector<int32_t> labels, contrastLabels;
  LossInputs inputs() const {
    LossInputs in;
    in.features = features.data();
    in.batch = batch;
    in.views = views;
    in.dim = dim;
    in.labels = labeled ? labels.data() : nullptr;
    in.contrastRows = extra;
    in.contrastFeatures = extra ? contrast.data() : nullptr;
    in.contrastLabels = extra && labeled ? contrastLabels.data() : nullptr;
    return in;
  }
  int64_t anchors() const { return numAnchors(spec, inputs()); }
};

inline std::vector<float> randomRows(std::mt19937& rng, int64_t rows, int64_t dim, bool unitNorm, float scale) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * dim));
  for (auto& v : x) v = g(rng) * scale;
  if (unitNorm)
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(x[r * dim + k]) * x[r * dim + k];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (int64_t k = 0; k < dim; ++k) x[r * dim + k] *= inv;
    }
  return x;
}

inline Problem makeProblem(std::mt19937& rng, int64_t batch, int64_t views, int64_t dim, int classes, int64_t extra,
                           bool labeled, bool normalizeInOp) {
  Problem p;
  p.batch = batch;
  p.views = views;
  p.dim = dim;
  p.extra = extra;
  p.labeled = labeled;
  p.spec.normalize = normalizeInOp;
  p.features = randomRows(rng, batch * views, dim, !normalizeInOp, normalizeInOp ? 3.0f : 1.0f);
  p.contrast = randomRows(rng, extra, dim, !normalizeInOp, normalizeInOp ? 2.0f : 1.0f);
  std::uniform_int_distribution<int> cls(0, classes - 1);
  p.labels.resize(static_cast<size_t>(batch));
  for (auto& l : p.labels) l = cls(rng) * 5 - 7;  // sparse and negative ids are legal
  p.contrastLabels.resize(static_cast<size_t>(extra));
  for (auto& l : p.contrastLabels) l = cls(rng) * 5 - 7;
  return p;
}

inline std::string describe(const Problem& p) {
  char buf[320];
  const LossSpec& s = p.spec;
  std::snprintf(buf, sizeof buf, "B=%lld V=%lld D=%lld M=%lld labeled=%d tau=%g base=%g %s %s norm=%d %s",
                (long long)p.batch, (long long)p.views, (long long)p.dim, (long long)p.extra, int(p.labeled),
                s.temperature, s.effectiveBaseTemperature(), s.variant == Variant::kIn ? "in" : "out",
                s.contrastMode == ContrastMode::kOne ? "one" : "all", int(s.normalize),
                s.reduction == Reduction::kMean ? "mean" : s.reduction == Reduction::kSum ? "sum" : "none");
  return buf;
}

inline RunOptions cudaRun(Precision precision = Precision::kFp32) {
  RunOptions r;
  r.device = Device::kCuda;
  r.precision = precision;
  return r;
}

struct Run {
  Status status;
  ForwardResult fwd;
  BackwardResult bwd;
  std::vector<float> perAnchor, stats, grad;
};

// Upstream gradients: 1 for mean/sum, a fixed random vector for 'none'.
inline std::vector<float> upstreamFor(const Problem& p) {
  if (p.spec.reduction != Reduction::kNone) return {1.0f};
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> u(-1.0f, 2.0f);
  std::vector<float> up(static_cast<size_t>(p.anchors()));
  for (auto& v : up) v = u(rng);
  return up;
}

// forward then backward through the backend (or the CPU core when backend is null).
inline Run runLoss(const Backend* backend, const Problem& p, const RunOptions& run) {
  Run r;
  const LossInputs in = p.inputs();
  r.perAnchor.assign(static_cast<size_t>(p.anchors()), NAN);
  r.stats.assign(static_cast<size_t>(statsSize(p.spec, in)), NAN);
  r.grad.assign(p.features.size(), NAN);
  const std::vector<float> up = upstreamFor(p);
  if (backend) {
    r.status = backend->forward(p.spec, in, run, r.perAnchor.data(), r.stats.data(), &r.fwd);
    if (!r.status.isOk()) return r;
    r.status = backend->backward(p.spec, in, run, r.stats.data(), up.data(), int64_t(up.size()), r.grad.data(), &r.bwd);
  } else {
    r.status = forward(p.spec, in, RunOptions{}, r.perAnchor.data(), r.stats.data(), &r.fwd);
    if (!r.status.isOk()) return r;
    r.status = backward(p.spec, in, RunOptions{}, r.stats.data(), up.data(), int64_t(up.size()), r.grad.data(), &r.bwd);
  }
  return r;
}

inline double maxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

struct Tolerance {
  double lossRel = 1e-5;  // |loss - ref| <= lossRel * max(1, |ref|) (also per anchor)
  double gradRel = 1e-4;  // max |grad - ref| <= gradRel * max |ref grad| + floor
};
inline Tolerance toleranceFor(Precision precision) {
  // docs/cuda.md, "Precision": tf32 keeps 10 mantissa bits, bf16 7; scores carry the operand
  // rounding times 1/tau, gradients in addition the rounding of the G tile.
  // On the emulator's model of that arithmetic the worst errors seen are about 10x (loss) and
  // 10-20x (gradient) below these bounds.
  if (precision == Precision::kTf32) return Tolerance{1e-3, 1e-2};
  if (precision == Precision::kBf16) return Tolerance{1e-2, 5e-2};
  return Tolerance{};
}

struct Errors {
  double loss = 0, perAnchor = 0, grad = 0, gradScale = 0;
};

// Compares a run with the float64 reference; returns the relative errors it saw.
inline Errors expectMatchesReference(const Run& r, const Problem& p, const Tolerance& tol, const std::string& what) {
  Errors e;
  CHECK(r.status.isOk()) << what << ": " << r.status.message();
  if (!r.status.isOk()) return e;
  const std::vector<float> upF = upstreamFor(p);
  std::vector<double> upD(upF.begin(), upF.end());
  const auto ref = supcon_test::referenceLoss(p.spec, p.inputs(), p.spec.reduction == Reduction::kNone ? &upD : nullptr);
  CHECK(r.fwd.validAnchors == ref.validAnchors) << what << ": valid anchors " << r.fwd.validAnchors << " vs "
                                                << ref.validAnchors;
  e.loss = std::fabs(r.fwd.loss - ref.loss) / std::max(1.0, std::fabs(ref.loss));
  CHECK(e.loss <= tol.lossRel) << what << ": loss " << r.fwd.loss << " vs " << ref.loss;
  const double perScale = std::max(1.0, maxAbs(ref.perAnchor));
  for (size_t k = 0; k < ref.perAnchor.size(); ++k)
    e.perAnchor = std::max(e.perAnchor, std::fabs(r.perAnchor[k] - ref.perAnchor[k]) / perScale);
  CHECK(e.perAnchor <= tol.lossRel) << what << ": per-anchor error " << e.perAnchor;
  e.gradScale = maxAbs(ref.grad);
  double worst = 0;
  bool finite = true;
  for (size_t i = 0; i < ref.grad.size(); ++i) {
    finite = finite && std::isfinite(r.grad[i]);
    worst = std::max(worst, std::fabs(double(r.grad[i]) - ref.grad[i]));
  }
  CHECK(finite) << what << ": non-finite gradient";
  // Floor for gradients that vanish exactly: float rounding of cancelling terms (as test_loss).
  double xmax = 1;
  for (float v : p.features) xmax = std::max(xmax, double(std::fabs(v)));
  const double floor = 1e-5 * xmax / p.spec.effectiveBaseTemperature();
  e.grad = worst / std::max(e.gradScale, 1e-30);
  CHECK(worst <= tol.gradRel * e.gradScale + floor) << what << ": grad max err " << worst << " vs max|grad| "
                                                    << e.gradScale;
  return e;
}

// Same outputs as the CPU core (float32 both): loss, per-anchor, stats, gradient.
inline void expectMatchesCpu(const Run& gpu, const Run& cpu, const Problem& p, const std::string& what) {
  if (!gpu.status.isOk() || !cpu.status.isOk()) {
    CHECK(false) << what << ": " << gpu.status.message() << " / " << cpu.status.message();
    return;
  }
  CHECK(std::fabs(gpu.fwd.loss - cpu.fwd.loss) <= 1e-5 * std::max(1.0, std::fabs(cpu.fwd.loss)))
      << what << ": loss " << gpu.fwd.loss << " vs cpu " << cpu.fwd.loss;
  // The statistics: the log-sum-exps m + log l over A(i) and P(i) (each device may pick its own
  // reference m).
  double statErr = 0;
  for (size_t k = 0; k + 1 < cpu.stats.size(); k += 2) {
    const double a = double(gpu.stats[k]) + gpu.stats[k + 1], b = double(cpu.stats[k]) + cpu.stats[k + 1];
    statErr = std::max(statErr, std::fabs(a - b) / std::max(1.0, std::fabs(b)));
  }
  CHECK(statErr <= 1e-5) << what << ": log-sum-exps differ from the CPU's by " << statErr;
  double gmax = 0, err = 0;
  for (size_t i = 0; i < cpu.grad.size(); ++i) {
    gmax = std::max(gmax, double(std::fabs(cpu.grad[i])));
    err = std::max(err, double(std::fabs(gpu.grad[i] - cpu.grad[i])));
  }
  double xmax = 1;  // floor for exactly vanishing gradients, as in expectMatchesReference
  for (float v : p.features) xmax = std::max(xmax, double(std::fabs(v)));
  CHECK(err <= 1e-4 * gmax + 1e-5 * xmax / p.spec.effectiveBaseTemperature())
      << what << ": grad differs from the CPU's by " << err << " (max " << gmax << ")";
}

struct SweepSize {
  int64_t batch, views, dim;
};

// Every option over the given sizes (the dimensions not crossed are cycled, as in test_loss).
inline int sweepAgainstReference(const Backend& b, const std::vector<SweepSize>& sizes, bool compareCpu,
                                 uint32_t seed) {
  std::mt19937 rng(seed);
  int cases = 0;
  for (const SweepSize& sz : sizes)
    for (int variant = 0; variant < 2; ++variant)
      for (int mode = 0; mode < 2; ++mode)
        for (int norm = 0; norm < 2; ++norm)
          for (int red = 0; red < 3; ++red)
            for (int extraCase = 0; extraCase < 2; ++extraCase) {
              if (mode == 1 && sz.views == 1) continue;
              const int classes = cases % 3 == 0 ? 2 : (cases % 3 == 1 ? 1000 : 5);
              const bool labeled = cases % 4 != 3 || sz.views == 1;  // SimCLR needs views
              const int64_t extra = extraCase ? 1 + (cases * 37) % 150 : 0;
              Problem p = makeProblem(rng, sz.batch, sz.views, sz.dim, classes, extra, labeled, norm);
              const float temps[] = {0.05f, 0.1f, 0.5f, 1.0f};
              p.spec.temperature = temps[cases % 4];
              p.spec.baseTemperature = cases % 2 ? p.spec.temperature : 0.07f;
              p.spec.variant = variant ? Variant::kIn : Variant::kOut;
              p.spec.contrastMode = mode ? ContrastMode::kOne : ContrastMode::kAll;
              p.spec.reduction = red == 0 ? Reduction::kMean : red == 1 ? Reduction::kSum : Reduction::kNone;
              const std::string what = std::string(b.name) + " " + describe(p);
              const Run gpu = runLoss(&b, p, cudaRun());
              expectMatchesReference(gpu, p, Tolerance{}, what);
              if (compareCpu) expectMatchesCpu(gpu, runLoss(nullptr, p, RunOptions{}), p, what);
              ++cases;
            }
  return cases;
}

// tf32 / bf16: stated bounds against the reference, and proof that the engine changed the
// arithmetic (results differ from float32's).
// The extra rows' gradient, when asked for, against the float64 reference (and the feature
// gradient unchanged by the request): 'all' and 'one', L_out and L_in, labeled and SimCLR,
// with and without normalization, over several tiles of extra rows.
inline int contrastGradientsMatchReference(const Backend& b, uint32_t seed) {
  std::mt19937 rng(seed);
  int cases = 0;
  const int64_t dims[] = {24, 70, 130};  // the three gradient tile widths
  for (int c = 0; c < 12; ++c) {
    const bool labeled = c % 4 != 3;
    Problem p = makeProblem(rng, 10 + 7 * c, 2, dims[c % 3], 3 + c % 4, 1 + (c * 61) % 200, labeled, c % 3 == 0);
    p.spec.variant = c % 2 ? Variant::kIn : Variant::kOut;
    p.spec.contrastMode = c % 4 >= 2 ? ContrastMode::kOne : ContrastMode::kAll;
    p.spec.reduction = c % 5 == 4 ? Reduction::kNone : c % 5 == 3 ? Reduction::kSum : Reduction::kMean;
    const LossInputs in = p.inputs();
    std::vector<float> per(size_t(p.anchors())), stats(size_t(statsSize(p.spec, in))), grad(p.features.size()),
        plain(p.features.size()), contrastGrad(p.contrast.size(), NAN);
    const std::vector<float> up = upstreamFor(p);
    ForwardResult fr;
    BackwardResult br;
    const RunOptions run = cudaRun();
    Status st = b.forward(p.spec, in, run, per.data(), stats.data(), &fr);
    if (st.isOk())
      st = b.backwardContrast(p.spec, in, run, stats.data(), up.data(), int64_t(up.size()), grad.data(),
                              contrastGrad.data(), &br);
    if (st.isOk()) st = b.backward(p.spec, in, run, stats.data(), up.data(), int64_t(up.size()), plain.data(), &br);
    CHECK(st.isOk()) << describe(p) << ": " << st.message();
    if (!st.isOk()) continue;
    std::vector<double> upD(up.begin(), up.end());
    const auto ref = supcon_test::referenceLoss(p.spec, in, p.spec.reduction == Reduction::kNone ? &upD : nullptr);
    const double scale = std::max(maxAbs(ref.grad), maxAbs(ref.contrastGrad));
    // The feature gradient stays what it was (the contrast pass then has more rows, so its
    // split plan, and with it the float32 summation order, may differ: equal within rounding).
    double worst = 0, worstFeatures = 0;
    for (size_t i = 0; i < ref.grad.size(); ++i)
      worstFeatures = std::max(worstFeatures, std::fabs(double(grad[i]) - double(plain[i])));
    CHECK(worstFeatures <= 1e-6 * scale) << describe(p) << ": the feature gradient moved by " << worstFeatures
                                         << " when the contrast gradient was asked for";
    for (size_t i = 0; i < ref.contrastGrad.size(); ++i)
      worst = std::max(worst, std::fabs(double(contrastGrad[i]) - ref.contrastGrad[i]));
    CHECK(maxAbs(ref.contrastGrad) > 0) << describe(p);
    CHECK(worst <= 1e-4 * scale + 1e-6) << describe(p) << ": contrast grad max err " << worst << " vs " << scale;
    ++cases;
  }
  return cases;
}

inline void precisionSweep(const Backend& b, Precision precision, const std::vector<SweepSize>& sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  const Tolerance tol = toleranceFor(precision);
  const char* pname = precision == Precision::kTf32 ? "tf32" : "bf16";
  Errors worst;
  int differs = 0, cases = 0;
  for (const SweepSize& sz : sizes)
    for (int variant = 0; variant < 2; ++variant)
      for (int mode = 0; mode < 2; ++mode)
        for (int extraCase = 0; extraCase < 2; ++extraCase) {
          if (mode == 1 && sz.views == 1) continue;
          Problem p = makeProblem(rng, sz.batch, sz.views, sz.dim, cases % 2 ? 10 : 3, extraCase ? 70 : 0, cases % 3 != 2,
                                  cases % 2 == 0);
          p.spec.temperature = cases % 2 ? 0.1f : 0.2f;
          p.spec.baseTemperature = 0.07f;
          p.spec.variant = variant ? Variant::kIn : Variant::kOut;
          p.spec.contrastMode = mode ? ContrastMode::kOne : ContrastMode::kAll;
          const std::string what = std::string(b.name) + " " + pname + " " + describe(p);
          const Run low = runLoss(&b, p, cudaRun(precision));
          const Errors e = expectMatchesReference(low, p, tol, what);
          worst.loss = std::max(worst.loss, e.loss);
          worst.grad = std::max(worst.grad, e.grad);
          const Run full = runLoss(&b, p, cudaRun(Precision::kFp32));
          if (low.status.isOk() && full.status.isOk() && (low.grad != full.grad || low.fwd.loss != full.fwd.loss)) ++differs;
          ++cases;
        }
  std::printf("  %s %s: %d cases, worst loss rel err %.3g (bound %.1g), worst grad err %.3g x max|grad| (bound %.1g)\n",
              b.name, pname, cases, worst.loss, tol.lossRel, worst.grad, tol.gradRel);
  CHECK(differs == cases) << pname << ": only " << differs << " of " << cases
                          << " runs differ from float32 (is the tensor-core engine running?)";
}

// Forward on one device, backward on the other: the stats format is shared.
inline void crossDeviceStats(const Backend& b, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int variant = 0; variant < 2; ++variant)
    for (int mode = 0; mode < 2; ++mode) {
      Problem p = makeProblem(rng, 70, 2, 40, 6, mode ? 0 : 33, true, variant == 1);
      p.spec.variant = variant ? Variant::kIn : Variant::kOut;
      p.spec.contrastMode = mode ? ContrastMode::kOne : ContrastMode::kAll;
      p.spec.reduction = Reduction::kNone;
      const LossInputs in = p.inputs();
      const std::vector<float> up = upstreamFor(p);
      const std::string what = std::string(b.name) + " cross-device " + describe(p);
      // CPU forward -> CUDA backward.
      Run a;
      a.perAnchor.assign(size_t(p.anchors()), 0);
      a.stats.assign(size_t(statsSize(p.spec, in)), 0);
      a.grad.assign(p.features.size(), NAN);
      a.status = forward(p.spec, in, RunOptions{}, a.perAnchor.data(), a.stats.data(), &a.fwd);
      if (a.status.isOk())
        a.status = b.backward(p.spec, in, cudaRun(), a.stats.data(), up.data(), int64_t(up.size()), a.grad.data(), &a.bwd);
      expectMatchesReference(a, p, Tolerance{}, what + " (cpu fwd, cuda bwd)");
      // CUDA forward -> CPU backward.
      Run c;
      c.perAnchor.assign(size_t(p.anchors()), 0);
      c.stats.assign(size_t(statsSize(p.spec, in)), 0);
      c.grad.assign(p.features.size(), NAN);
      c.status = b.forward(p.spec, in, cudaRun(), c.perAnchor.data(), c.stats.data(), &c.fwd);
      if (c.status.isOk())
        c.status = backward(p.spec, in, RunOptions{}, c.stats.data(), up.data(), int64_t(up.size()), c.grad.data(), &c.bwd);
      expectMatchesReference(c, p, Tolerance{}, what + " (cuda fwd, cpu bwd)");
    }
}

// The number of column splits changes only the float32 summation order.
inline void splitsAgree(const Backend& b, int64_t batch, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int mode = 0; mode < 3; ++mode) {  // symmetric, general ('all' + extra), 'one'
    Problem p = makeProblem(rng, batch, 2, dim, 7, mode == 1 ? 100 : 0, true, mode == 2);
    p.spec.contrastMode = mode == 2 ? ContrastMode::kOne : ContrastMode::kAll;
    p.spec.variant = mode == 1 ? Variant::kIn : Variant::kOut;
    std::vector<Run> runs;
    for (int splits : {1, 2, 5, 64}) {
      Backend::forceSplits(splits);
      runs.push_back(runLoss(&b, p, cudaRun()));
      const std::string what = std::string(b.name) + " splits=" + std::to_string(splits) + " " + describe(p);
      expectMatchesReference(runs.back(), p, Tolerance{}, what);
    }
    Backend::forceSplits(0);
    const Run again = runLoss(&b, p, cudaRun());
    const Run again2 = runLoss(&b, p, cudaRun());
    CHECK(again.status.isOk() && again2.status.isOk());
    if (again.status.isOk() && again2.status.isOk()) {
      double diff = 0, gmax = 0;
      for (size_t i = 0; i < again.grad.size(); ++i) {
        diff = std::max(diff, double(std::fabs(again.grad[i] - again2.grad[i])));
        gmax = std::max(gmax, double(std::fabs(again.grad[i])));
      }
      // Only the double-precision atomics of the O(N D) class sums are unordered.
      CHECK(diff <= 1e-6 * gmax) << b.name << ": repeated runs differ by " << diff;
      CHECK(std::fabs(again.fwd.loss - again2.fwd.loss) <= 1e-7 * std::max(1.0, std::fabs(again.fwd.loss)));
    }
  }
}

inline void edgeCases(const Backend& b, uint32_t seed) {
  std::mt19937 rng(seed);
  {  // anchors without positives: excluded from the mean, zero per-anchor loss
    Problem p = makeProblem(rng, 6, 1, 8, 2, 0, true, false);
    p.labels = {0, 0, 1, 2, 2, 3};
    const Run r = runLoss(&b, p, cudaRun());
    expectMatchesReference(r, p, Tolerance{}, std::string(b.name) + " anchors without positives");
    CHECK(r.fwd.validAnchors == 4) << r.fwd.validAnchors;
    CHECK(r.perAnchor.size() == 6 && r.perAnchor[2] == 0.0f && r.perAnchor[5] == 0.0f);
  }
  {  // N = 2, one class, duplicate rows, tau = 100
    Problem two = makeProblem(rng, 2, 1, 4, 1, 0, true, false);
    expectMatchesReference(runLoss(&b, two, cudaRun()), two, Tolerance{}, std::string(b.name) + " N=2");
    Problem dup = makeProblem(rng, 8, 2, 16, 3, 0, true, false);
    for (int64_t k = 0; k < 16; ++k) dup.features[16 + k] = dup.features[k];
    expectMatchesReference(runLoss(&b, dup, cudaRun()), dup, Tolerance{}, std::string(b.name) + " duplicate rows");
    Problem hot = makeProblem(rng, 20, 2, 16, 3, 0, true, false);
    hot.spec.temperature = 100.0f;
    expectMatchesReference(runLoss(&b, hot, cudaRun()), hot, Tolerance{}, std::string(b.name) + " tau=100");
  }
  {  // cold temperature and unnormalized large rows stay finite and match
    Problem cold = makeProblem(rng, 20, 2, 16, 3, 0, true, false);
    cold.spec.temperature = 0.01f;
    const Run rc = runLoss(&b, cold, cudaRun());
    CHECK(rc.status.isOk() && std::isfinite(rc.fwd.loss)) << rc.status.message();
    bool finite = true;
    for (float g : rc.grad) finite = finite && std::isfinite(g);
    CHECK(finite) << "tau = 0.01 gradient";
    Problem big = makeProblem(rng, 30, 2, 8, 4, 0, true, false);
    for (auto& v : big.features) v *= 300.0f;
    const Run rb = runLoss(&b, big, cudaRun());
    CHECK(rb.status.isOk() && std::isfinite(rb.fwd.loss)) << rb.fwd.loss;
    const auto ref = supcon_test::referenceLoss(big.spec, big.inputs());
    CHECK(std::fabs(rb.fwd.loss - ref.loss) <= 1e-5 * std::max(1.0, std::fabs(ref.loss))) << rb.fwd.loss << " vs "
                                                                                           << ref.loss;
  }
  {  // distinct labels with one view: no positives anywhere
    Problem p = makeProblem(rng, 10, 1, 8, 1, 0, true, false);
    for (int32_t k = 0; k < 10; ++k) p.labels[k] = 3 * k;
    const Run r = runLoss(&b, p, cudaRun());
    CHECK(r.status.isOk() && r.fwd.loss == 0.0 && r.fwd.validAnchors == 0);
    for (float g : r.grad) CHECK(g == 0.0f);
  }
  {  // unlabeled extra contrast rows are negatives of every anchor
    Problem p = makeProblem(rng, 40, 2, 24, 1, 50, false, true);
    expectMatchesReference(runLoss(&b, p, cudaRun()), p, Tolerance{}, std::string(b.name) + " SimCLR + extra rows");
  }
}

// Device memory is O((N + M) D): the peak the call reports stays within a small multiple of the
// operand size (no N x N buffer, which would be 4 N^2 bytes).
inline void workspaceIsLinear(const Backend& b, int64_t batch, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p = makeProblem(rng, batch, 2, dim, 10, 0, true, true);
  const Run r = runLoss(&b, p, cudaRun());
  CHECK(r.status.isOk()) << r.status.message();
  const int64_t rows = batch * 2, ldz = (dim + 31) / 32 * 32;
  const int64_t operand = (rows + 128) * ldz * 4;
  CHECK(r.fwd.workspaceBytes > 0 && r.bwd.workspaceBytes > 0);
  CHECK(r.fwd.workspaceBytes <= 8 * operand + (1 << 20)) << "forward workspace " << r.fwd.workspaceBytes;
  CHECK(r.bwd.workspaceBytes <= 8 * operand + (1 << 20)) << "backward workspace " << r.bwd.workspaceBytes;
  CHECK(r.bwd.workspaceBytes < 4 * rows * rows) << "workspace as large as an N x N matrix";
}

// Statuses: bad input is refused before any device work; a bad device index names the range;
// a memory cap gives kOutOfMemory.
inline void statuses(const Backend& b, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p = makeProblem(rng, 9, 2, 12, 3, 0, true, false);
  std::vector<float> per(18), stats(size_t(statsSize(p.spec, p.inputs())));
  LossSpec bad = p.spec;
  bad.temperature = -1;
  CHECK(forward(bad, p.inputs(), cudaRun(), per.data(), stats.data(), nullptr).code() == StatusCode::kInvalidArgument);
  Problem nan = p;
  nan.features[5] = NAN;
  CHECK(forward(nan.spec, nan.inputs(), cudaRun(), per.data(), stats.data(), nullptr).code() ==
        StatusCode::kInvalidArgument);
  RunOptions wrong = cudaRun();
  wrong.cudaDevice = 97;
  const Status st = b.forward(p.spec, p.inputs(), wrong, per.data(), stats.data(), nullptr);
  CHECK(st.code() == StatusCode::kInvalidArgument && st.message().find("cudaDevice") != std::string::npos)
      << st.message();
  setenv("SUPCON_CUDA_MEMORY_LIMIT", "4096", 1);
  ForwardResult fr;
  const Status oom = b.forward(p.spec, p.inputs(), cudaRun(), per.data(), stats.data(), &fr);
  std::vector<float> grad(p.features.size());
  const float one = 1.0f;
  const Status oomB = b.backward(p.spec, p.inputs(), cudaRun(), stats.data(), &one, 1, grad.data(), nullptr);
  unsetenv("SUPCON_CUDA_MEMORY_LIMIT");
  CHECK(oom.code() == StatusCode::kOutOfMemory) << oom.message();
  CHECK(oomB.code() == StatusCode::kOutOfMemory) << oomB.message();
  // And the device is usable afterwards.
  const Run after = runLoss(&b, p, cudaRun());
  expectMatchesReference(after, p, Tolerance{}, std::string(b.name) + " after out-of-memory");
}

}  // namespace supcon_cuda_test
