// The momentum optimizers' step over many variables against a float64 reference of the rules in
// supcon/nn.h: SGD (with and without Nesterov) and LARS, decayed and excluded variables, a first
// step without a buffer, a variable large enough to split across threads; bad arguments.
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "supcon/nn.h"

namespace {

using supcon::nn::OptimizerKind;
using supcon::nn::OptimizerStep;
using supcon::nn::OptimizerVariable;

struct Var {
  std::vector<float> w, b, g;
  std::vector<double> rw, rb;
  bool decay;
};

void referenceStep(const OptimizerStep& s, Var& v) {
  const double wd = v.decay ? s.weightDecay : 0.0;
  double scale = s.learningRate;
  if (s.kind == OptimizerKind::kLars && v.decay) {
    double w2 = 0, g2 = 0;
    for (size_t i = 0; i < v.g.size(); ++i) {
      w2 += v.rw[i] * v.rw[i];
      g2 += double(v.g[i]) * v.g[i];
    }
    const double wn = std::sqrt(w2), gn = std::sqrt(g2);
    scale = s.learningRate * (wn > 0 && gn > 0 ? s.trustCoefficient * wn / (gn + s.weightDecay * wn) : 1.0);
  }
  for (size_t i = 0; i < v.g.size(); ++i) {
    const double d = v.g[i] + wd * v.rw[i];
    if (s.kind == OptimizerKind::kSgd) {
      v.rb[i] = s.momentum * v.rb[i] + d;
      v.rw[i] -= s.learningRate * (s.nesterov ? d + s.momentum * v.rb[i] : v.rb[i]);
    } else {
      v.rb[i] = s.momentum * v.rb[i] + scale * d;
      v.rw[i] -= v.rb[i];
    }
  }
}

void run(OptimizerStep s) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  std::vector<Var> vars;
  for (int64_t size : {100000, 144, 16, 0, 7}) {
    Var v;
    v.w.resize(size);
    for (auto& x : v.w) x = n(rng);
    v.b.assign(size, 0.0f);
    v.rw.assign(v.w.begin(), v.w.end());
    v.rb.assign(size, 0.0);
    v.decay = size != 16;
    vars.push_back(std::move(v));
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<OptimizerVariable> args;
    std::vector<std::vector<float>> nw(vars.size()), nb(vars.size());
    for (size_t k = 0; k < vars.size(); ++k) {
      Var& v = vars[k];
      v.g.resize(v.w.size());
      for (auto& x : v.g) x = n(rng);
      nw[k].assign(v.w.size(), NAN);
      nb[k].assign(v.w.size(), NAN);
      OptimizerVariable a;
      a.value = v.w.data();
      a.grad = v.g.data();
      a.buffer = step == 0 ? nullptr : v.b.data();  // the first step has no buffer yet
      a.newValue = nw[k].data();
      a.newBuffer = nb[k].data();
      a.size = static_cast<int64_t>(v.w.size());
      a.decay = v.decay;
      args.push_back(a);
    }
    supcon::Status st = supcon::nn::optimizerUpdate(s, args.data(), static_cast<int64_t>(args.size()));
    CHECK(st.isOk()) << st.message();
    for (size_t k = 0; k < vars.size(); ++k) {
      Var& v = vars[k];
      referenceStep(s, v);
      for (size_t i = 0; i < v.w.size(); ++i) {
        CHECK(std::fabs(nw[k][i] - v.rw[i]) <= 1e-5 * (1 + std::fabs(v.rw[i])))
            << "kind " << int(s.kind) << " step " << step << " var " << k << " value " << nw[k][i] << " vs " << v.rw[i];
        if (std::fabs(nw[k][i] - v.rw[i]) > 1e-5 * (1 + std::fabs(v.rw[i]))) return;
      }
      v.w = nw[k];
      v.b = nb[k];
    }
  }
}

}  // namespace

TEST(optimizer_sgd_matches_float64) {
  OptimizerStep s;
  s.learningRate = 0.05f;
  s.weightDecay = 1e-3f;
  run(s);
  s.nesterov = true;
  run(s);
}

TEST(optimizer_lars_matches_float64) {
  OptimizerStep s;
  s.kind = OptimizerKind::kLars;
  s.learningRate = 0.5f;
  s.weightDecay = 1e-3f;
  s.trustCoefficient = 0.02f;
  run(s);
}

TEST(optimizer_rejects_bad_arguments) {
  std::vector<float> w(4, 1.0f), g(4, 1.0f), nw(4), nb(4);
  OptimizerVariable v;
  v.value = w.data();
  v.grad = g.data();
  v.newValue = nw.data();
  v.newBuffer = nb.data();
  v.size = 4;
  OptimizerStep s;
  s.learningRate = 0.1f;
  CHECK(supcon::nn::optimizerUpdate(s, &v, 1).isOk());
  OptimizerStep bad = s;
  bad.learningRate = NAN;
  CHECK(supcon::nn::optimizerUpdate(bad, &v, 1).code() == supcon::StatusCode::kInvalidArgument);
  bad = s;
  bad.momentum = 1.0f;
  CHECK(supcon::nn::optimizerUpdate(bad, &v, 1).code() == supcon::StatusCode::kInvalidArgument);
  bad = s;
  bad.kind = OptimizerKind::kLars;
  bad.trustCoefficient = 0.0f;
  CHECK(supcon::nn::optimizerUpdate(bad, &v, 1).code() == supcon::StatusCode::kInvalidArgument);
  OptimizerVariable nullGrad = v;
  nullGrad.grad = nullptr;
  CHECK(supcon::nn::optimizerUpdate(s, &nullGrad, 1).code() == supcon::StatusCode::kInvalidArgument);
  CHECK(supcon::nn::optimizerUpdate(s, nullptr, 1).code() == supcon::StatusCode::kInvalidArgument);
}

SUPCON_TEST_MAIN
