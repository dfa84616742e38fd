// The fused CPU loss against the float64 reference (reference.h) over a randomized sweep of
// every option, plus properties: thread-count independence, finite differences, edge cases,
// and bad input returning a Status instead of crashing.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "edge_cases.h"
#include "reference.h"
#include "supcon/loss.h"
#include "supcon/thread_pool.h"

using namespace supcon;
using supcon_test::referenceLoss;

namespace {

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
};

std::vector<float> randomRows(std::mt19937& rng, int64_t rows, int64_t dim, bool unitNorm, float scale = 1.0f) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * dim));
  for (auto& v : x) v = g(rng) * scale;
  if (unitNorm)
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(x[r * dim + k]) * x[r * dim + k];
      float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (int64_t k = 0; k < dim; ++k) x[r * dim + k] *= inv;
    }
  return x;
}

Problem makeProblem(std::mt19937& rng, int64_t batch, int64_t views, int64_t dim, int classes, int64_t extra,
                    bool labeled, bool normalizeInOp) {
  Problem p;
  p.batch = batch;
  p.views = views;
  p.dim = dim;
  p.extra = extra;
  p.labeled = labeled;
  p.spec.normalize = normalizeInOp;
  // With normalize on, pass unnormalized rows of varied norms; otherwise unit rows.
  p.features = randomRows(rng, batch * views, dim, !normalizeInOp, normalizeInOp ? 3.0f : 1.0f);
  p.contrast = randomRows(rng, extra, dim, !normalizeInOp, normalizeInOp ? 2.0f : 1.0f);
  std::uniform_int_distribution<int> cls(0, classes - 1);
  p.labels.resize(static_cast<size_t>(batch));
  for (auto& l : p.labels) l = cls(rng) * 7 - 3;  // sparse, negative ids are legal
  p.contrastLabels.resize(static_cast<size_t>(extra));
  for (auto& l : p.contrastLabels) l = cls(rng) * 7 - 3;
  return p;
}

struct Run {
  Status status;
  ForwardResult fwd;
  std::vector<float> perAnchor, grad, contrastGrad;
};

Run runCore(const Problem& p, const std::vector<float>* upstream = nullptr) {
  Run r;
  LossInputs in = p.inputs();
  r.perAnchor.assign(static_cast<size_t>(numAnchors(p.spec, in)), NAN);
  r.grad.assign(p.features.size(), NAN);
  r.contrastGrad.assign(p.contrast.size(), NAN);  // asked for whenever there are extra rows
  std::vector<float> stats(static_cast<size_t>(statsSize(p.spec, in)));
  r.status = forward(p.spec, in, RunOptions{}, r.perAnchor.data(), stats.data(), &r.fwd);
  if (!r.status.isOk()) return r;
  std::vector<float> ones(p.spec.reduction == Reduction::kNone ? r.perAnchor.size() : 1, 1.0f);
  const std::vector<float>& up = upstream ? *upstream : ones;
  BackwardResult br;
  r.status = backward(p.spec, in, RunOptions{}, stats.data(), up.data(), static_cast<int64_t>(up.size()),
                      r.grad.data(), p.extra ? r.contrastGrad.data() : nullptr, &br);
  return r;
}

double maxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Loss relative error <= 1e-5 and gradient max error <= 1e-4 * max|grad| (docs/loss.md).
void expectMatchesReference(const Problem& p, const char* what) {
  std::vector<double> upD;
  std::vector<float> upF;
  LossInputs in = p.inputs();
  if (p.spec.reduction == Reduction::kNone) {
    std::mt19937 rng(99);
    std::uniform_real_distribution<float> u(-1.0f, 2.0f);
    for (int64_t k = 0; k < numAnchors(p.spec, in); ++k) {
      upF.push_back(u(rng));
      upD.push_back(upF.back());
    }
  }
  Run r = runCore(p, upF.empty() ? nullptr : &upF);
  CHECK(r.status.isOk()) << what << ": " << r.status.message();
  if (!r.status.isOk()) return;
  auto ref = referenceLoss(p.spec, in, upD.empty() ? nullptr : &upD);
  CHECK(r.fwd.validAnchors == ref.validAnchors) << what;
  double lossTol = 1e-5 * std::max(1.0, std::fabs(ref.loss));
  CHECK(std::fabs(r.fwd.loss - ref.loss) <= lossTol) << what << ": loss " << r.fwd.loss << " vs " << ref.loss;
  double perTol = 1e-5 * std::max(1.0, maxAbs(ref.perAnchor));
  for (size_t k = 0; k < ref.perAnchor.size(); ++k)
    if (std::fabs(r.perAnchor[k] - ref.perAnchor[k]) > perTol) {
      CHECK(false) << what << ": perAnchor[" << k << "] " << r.perAnchor[k] << " vs " << ref.perAnchor[k];
      break;
    }
  // The extra rows' gradient is held to the same bound, relative to the largest of either.
  double gmax = std::max(maxAbs(ref.grad), maxAbs(ref.contrastGrad)), worst = 0, worstContrast = 0;
  for (size_t i = 0; i < ref.grad.size(); ++i) worst = std::max(worst, std::fabs(r.grad[i] - ref.grad[i]));
  for (size_t i = 0; i < ref.contrastGrad.size(); ++i)
    worstContrast = std::max(worstContrast, std::fabs(r.contrastGrad[i] - ref.contrastGrad[i]));
  // Floor for gradients that vanish exactly (N = 2 with one class, D = 1 through normalization):
  // float rounding of terms of size (tau/tau_b)/tau * |x| that cancel.
  double xmax = 1;
  for (float v : p.features) xmax = std::max(xmax, double(std::fabs(v)));
  double floor = 1e-5 * xmax / p.spec.effectiveBaseTemperature();
  CHECK(worst <= 1e-4 * gmax + floor) << what << ": grad max err " << worst << " vs max|grad| " << gmax;
  CHECK(worstContrast <= 1e-4 * gmax + floor) << what << ": contrast grad max err " << worstContrast << " vs max|grad| "
                                              << gmax;
}

const char* name(const LossSpec& s) {
  static char buf[160];
  std::snprintf(buf, sizeof buf, "tau=%g variant=%s mode=%s norm=%d red=%s", s.temperature,
                s.variant == Variant::kIn ? "in" : "out", s.contrastMode == ContrastMode::kOne ? "one" : "all",
                int(s.normalize), s.reduction == Reduction::kMean ? "mean" : s.reduction == Reduction::kSum ? "sum" : "none");
  return buf;
}

}  // namespace

TEST(loss_matches_reference_sweep) {
  std::mt19937 rng(2024);
  struct Size { int64_t batch, views, dim; };
  const Size sizes[] = {{2, 1, 3}, {7, 2, 1}, {33, 2, 64}, {130, 1, 128}, {64, 4, 257}, {129, 2, 17}, {256, 2, 32}};
  int cases = 0;
  for (const Size& sz : sizes) {
    for (int variant = 0; variant < 2; ++variant)
      for (int mode = 0; mode < 2; ++mode)
        for (int norm = 0; norm < 2; ++norm)
          for (int red = 0; red < 3; ++red)
            for (int extraCase = 0; extraCase < 2; ++extraCase) {
              if (mode == 1 && sz.views == 1) continue;  // 'one' needs views (the JS API rejects rank 2)
              // Cycle the remaining dimensions instead of taking their product.
              const int classes = (cases % 3 == 0) ? 2 : (cases % 3 == 1 ? 1000 : 5);
              const bool labeled = cases % 4 != 3 || sz.views == 1;  // every 4th case is SimCLR (which needs views)
              const int64_t extra = extraCase ? 1 + (cases * 37) % 150 : 0;
              Problem p = makeProblem(rng, sz.batch, sz.views, sz.dim, classes, extra, labeled, norm);
              const float temps[] = {0.05f, 0.1f, 0.5f, 1.0f};
              p.spec.temperature = temps[cases % 4];
              p.spec.baseTemperature = cases % 2 ? p.spec.temperature : 0.07f;
              p.spec.variant = variant ? Variant::kIn : Variant::kOut;
              p.spec.contrastMode = mode ? ContrastMode::kOne : ContrastMode::kAll;
              p.spec.reduction = red == 0 ? Reduction::kMean : red == 1 ? Reduction::kSum : Reduction::kNone;
              char what[256];
              std::snprintf(what, sizeof what, "B=%lld V=%lld D=%lld M=%lld classes=%d labeled=%d %s", (long long)sz.batch,
                            (long long)sz.views, (long long)sz.dim, (long long)extra, classes, int(labeled), name(p.spec));
              expectMatchesReference(p, what);
              ++cases;
            }
  }
  CHECK(cases > 250) << cases;
}

TEST(loss_larger_problems_match_reference) {
  std::mt19937 rng(5);
  // N = 512 with uneven tiles, and the general path with a large extra set.
  Problem a = makeProblem(rng, 256, 2, 128, 10, 0, true, false);
  expectMatchesReference(a, "N=512 D=128 symmetric");
  Problem b = makeProblem(rng, 100, 3, 65, 7, 300, true, true);
  b.spec.variant = Variant::kIn;
  expectMatchesReference(b, "N=300 M=300 in, normalize");
  Problem c = makeProblem(rng, 255, 2, 64, 3, 0, false, false);
  c.spec.contrastMode = ContrastMode::kOne;
  expectMatchesReference(c, "SimCLR one");
}

TEST(loss_is_bitwise_independent_of_thread_count) {
  std::mt19937 rng(77);
  for (int mode = 0; mode < 2; ++mode) {
    Problem p = makeProblem(rng, 300, 2, 96, 10, mode ? 200 : 0, true, true);
    p.spec.variant = mode ? Variant::kIn : Variant::kOut;
    setNumThreads(1);
    Run one = runCore(p);
    setNumThreads(4);
    Run four = runCore(p);
    setNumThreads(3);
    Run three = runCore(p);
    CHECK(one.status.isOk() && four.status.isOk() && three.status.isOk());
    CHECK(one.fwd.loss == four.fwd.loss && one.fwd.loss == three.fwd.loss) << one.fwd.loss << " " << four.fwd.loss;
    CHECK(std::memcmp(one.grad.data(), four.grad.data(), one.grad.size() * 4) == 0) << "grad differs (4 threads)";
    CHECK(std::memcmp(one.grad.data(), three.grad.data(), one.grad.size() * 4) == 0) << "grad differs (3 threads)";
    CHECK(std::memcmp(one.contrastGrad.data(), four.contrastGrad.data(), one.contrastGrad.size() * 4) == 0)
        << "contrast grad differs (4 threads)";
  }
  setNumThreads(2);
}

TEST(loss_gradient_matches_finite_differences) {
  // Central differences of the float64 reference confirm the reference's own analytic gradient
  // (including the G^T term), which the sweep then holds the fused kernel to.
  std::mt19937 rng(3);
  for (int variant = 0; variant < 2; ++variant) {
    Problem p = makeProblem(rng, 6, 2, 5, 3, 4, true, true);
    p.spec.variant = variant ? Variant::kIn : Variant::kOut;
    p.spec.temperature = 0.3f;
    LossInputs in = p.inputs();
    auto ref = referenceLoss(p.spec, in);
    const double h = 1e-3;
    double worst = 0;
    for (size_t i = 0; i < p.features.size(); ++i) {
      Problem q = p;
      float orig = q.features[i];
      q.features[i] = orig + float(h);
      double up = referenceLoss(q.spec, q.inputs()).loss;
      q.features[i] = orig - float(h);
      double down = referenceLoss(q.spec, q.inputs()).loss;
      double fd = (up - down) / (double(orig + float(h)) - double(orig - float(h)));
      worst = std::max(worst, std::fabs(fd - ref.grad[i]));
    }
    // The extra rows' analytic gradient too (they are positives and negatives of the anchors).
    for (size_t i = 0; i < p.contrast.size(); ++i) {
      Problem q = p;
      float orig = q.contrast[i];
      q.contrast[i] = orig + float(h);
      double up = referenceLoss(q.spec, q.inputs()).loss;
      q.contrast[i] = orig - float(h);
      double down = referenceLoss(q.spec, q.inputs()).loss;
      double fd = (up - down) / (double(orig + float(h)) - double(orig - float(h)));
      worst = std::max(worst, std::fabs(fd - ref.contrastGrad[i]));
    }
    CHECK(maxAbs(ref.contrastGrad) > 1e-3) << "the extra rows' gradient should not vanish";
    CHECK(worst < 1e-5 * std::max(1.0, maxAbs(ref.grad)) + 1e-6) << "fd error " << worst;
    // And dropping the G^T term would be visibly wrong: the fused result matches the full one.
    Run r = runCore(p);
    double err = 0;
    for (size_t i = 0; i < ref.grad.size(); ++i) err = std::max(err, std::fabs(r.grad[i] - ref.grad[i]));
    CHECK(err <= 1e-4 * maxAbs(ref.grad)) << err;
  }
}

TEST(loss_contrast_gradient_is_optional_and_leaves_the_feature_gradient_unchanged) {
  // Asking for the extra rows' gradient adds a pass; the features' gradient stays bitwise the same,
  // and forwardBackward gives what forward + backward give.
  std::mt19937 rng(41);
  for (int mode = 0; mode < 2; ++mode) {
    Problem p = makeProblem(rng, 70, 2, 40, 4, 150, mode == 0, mode == 1);
    p.spec.contrastMode = mode ? ContrastMode::kOne : ContrastMode::kAll;
    const LossInputs in = p.inputs();
    const int64_t A = numAnchors(p.spec, in);
    std::vector<float> per(static_cast<size_t>(A)), stats(static_cast<size_t>(statsSize(p.spec, in))), g1(p.features.size()),
        g2(p.features.size()), g3(p.features.size()), c2(p.contrast.size(), NAN), c3(p.contrast.size(), NAN);
    ForwardResult fr;
    BackwardResult br;
    const float one = 1.0f;
    CHECK(forward(p.spec, in, RunOptions{}, per.data(), stats.data(), &fr).isOk());
    CHECK(backward(p.spec, in, RunOptions{}, stats.data(), &one, 1, g1.data(), &br).isOk());
    CHECK(backward(p.spec, in, RunOptions{}, stats.data(), &one, 1, g2.data(), c2.data(), &br).isOk());
    CHECK(forwardBackward(p.spec, in, RunOptions{}, per.data(), g3.data(), c3.data(), &fr).isOk());
    CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * 4) == 0) << "feature grad changed by the contrast grad";
    CHECK(std::memcmp(g2.data(), g3.data(), g2.size() * 4) == 0) << "forwardBackward grad differs";
    CHECK(std::memcmp(c2.data(), c3.data(), c2.size() * 4) == 0) << "forwardBackward contrast grad differs";
  }
}

TEST(loss_edge_cases) {
  std::mt19937 rng(11);
  // Anchors without positives are excluded from the mean and counted.
  {
    Problem p = makeProblem(rng, 6, 1, 8, 2, 0, true, false);
    p.labels = {0, 0, 1, 2, 2, 3};  // classes 1 and 3 have one member: 2 anchors without positives
    Run r = runCore(p);
    CHECK(r.status.isOk());
    CHECK(r.fwd.validAnchors == 4) << r.fwd.validAnchors;
    CHECK(r.perAnchor[2] == 0.0f && r.perAnchor[5] == 0.0f);
    expectMatchesReference(p, "anchors without positives");
  }
  // All one class, N = 2, duplicate rows, extreme temperatures.
  {
    Problem p = makeProblem(rng, 5, 2, 16, 1, 0, true, false);
    expectMatchesReference(p, "one class");
    Problem two = makeProblem(rng, 2, 1, 4, 1, 0, true, false);
    expectMatchesReference(two, "N=2");
    Problem dup = makeProblem(rng, 8, 2, 16, 3, 0, true, false);
    for (int64_t k = 0; k < 16; ++k) dup.features[16 + k] = dup.features[k];
    expectMatchesReference(dup, "duplicate rows");
    Problem cold = makeProblem(rng, 20, 2, 16, 3, 0, true, false);
    cold.spec.temperature = 0.01f;
    Run rc = runCore(cold);
    CHECK(rc.status.isOk() && std::isfinite(rc.fwd.loss));
    for (float g : rc.grad) CHECK(std::isfinite(g));
    Problem hot = makeProblem(rng, 20, 2, 16, 3, 0, true, false);
    hot.spec.temperature = 100.0f;
    expectMatchesReference(hot, "tau=100");
  }
  // Unnormalized rows with large norms: |s| ~ 1e5 must not overflow.
  {
    Problem p = makeProblem(rng, 30, 2, 8, 4, 0, true, false);
    for (auto& v : p.features) v *= 300.0f;
    Run r = runCore(p);
    CHECK(r.status.isOk() && std::isfinite(r.fwd.loss)) << r.fwd.loss;
    bool finite = true;
    for (float g : r.grad) finite = finite && std::isfinite(g);
    CHECK(finite);
    auto ref = referenceLoss(p.spec, p.inputs());
    CHECK(std::fabs(r.fwd.loss - ref.loss) <= 1e-5 * std::max(1.0, std::fabs(ref.loss))) << r.fwd.loss << " vs " << ref.loss;
  }
  // Distinct labels with one view: no positives in this batch -> loss 0, zero gradient, 0 valid
  // anchors. SimCLR with one view could never have a positive: refused, naming the labels.
  {
    Problem p = makeProblem(rng, 10, 1, 8, 1, 0, true, false);
    for (int32_t b = 0; b < 10; ++b) p.labels[b] = 3 * b;
    Run r = runCore(p);
    CHECK(r.status.isOk() && r.fwd.loss == 0.0 && r.fwd.validAnchors == 0);
    for (float g : r.grad) CHECK(g == 0.0f);
    p.labeled = false;
    Run s = runCore(p);
    CHECK(s.status.code() == StatusCode::kInvalidArgument && s.status.argument() == "labels") << s.status.message();
  }
}

TEST(loss_bad_input_returns_status) {
  std::mt19937 rng(1);
  Problem p = makeProblem(rng, 4, 2, 8, 2, 0, true, false);
  std::vector<float> per(8), stats(size_t(statsSize(p.spec, p.inputs())));
  auto fwd = [&](const LossSpec& s, const LossInputs& in) { return forward(s, in, RunOptions{}, per.data(), stats.data(), nullptr); };
  LossInputs in = p.inputs();
  LossSpec s = p.spec;
  s.temperature = 0.0f;
  CHECK(fwd(s, in).code() == StatusCode::kInvalidArgument);
  s.temperature = NAN;
  CHECK(fwd(s, in).code() == StatusCode::kInvalidArgument);
  s = p.spec;
  s.baseTemperature = -1.0f;
  CHECK(fwd(s, in).code() == StatusCode::kInvalidArgument);
  LossInputs bad = in;
  bad.dim = 0;
  CHECK(fwd(p.spec, bad).code() == StatusCode::kInvalidArgument);
  bad = in;
  bad.batch = 1;
  bad.views = 1;
  CHECK(fwd(p.spec, bad).code() == StatusCode::kInvalidArgument) << "N < 2";
  bad = in;
  bad.features = nullptr;
  CHECK(fwd(p.spec, bad).code() == StatusCode::kInvalidArgument);
  Problem nan = p;
  nan.features[13] = NAN;
  Status st = fwd(nan.spec, nan.inputs());
  CHECK(st.code() == StatusCode::kInvalidArgument && st.message().find("index 13") != std::string::npos) << st.message();
  nan.features[13] = INFINITY;
  CHECK(fwd(nan.spec, nan.inputs()).code() == StatusCode::kInvalidArgument);
  bad = in;
  bad.batch = int64_t(1) << 40;  // sizes past int32 are refused before any allocation or read
  CHECK(fwd(p.spec, bad).code() == StatusCode::kInvalidArgument);
  RunOptions cuda;
  cuda.device = Device::kCuda;
#if !defined(SUPCON_WITH_CUDA)
  CHECK(forward(p.spec, in, cuda, per.data(), stats.data(), nullptr).code() == StatusCode::kUnavailable);
#endif
  float one = 1.0f;
  std::vector<float> grad(p.features.size());
  CHECK(backward(p.spec, in, RunOptions{}, stats.data(), &one, 2, grad.data(), nullptr).code() ==
        StatusCode::kInvalidArgument) << "wrong upstream length";
}

TEST(loss_edge_case_table) {
  // The shared table (test/fixtures/loss-edge-cases.json) through the public C++ API.
  supcon_test::EdgeBackend b{"cpu", RunOptions{},
                             [](const LossSpec& s, const LossInputs& in, const RunOptions& run, float* per, float* stats,
                                ForwardResult* r) { return forward(s, in, run, per, stats, r); },
                             [](const LossSpec& s, const LossInputs& in, const RunOptions& run, const float* stats,
                                const float* up, int64_t n, float* grad, BackwardResult* r) {
                               return backward(s, in, run, stats, up, n, grad, r);
                             }};
  CHECK(supcon_test::runEdgeCaseTable(b) > 20);
}

SUPCON_TEST_MAIN
