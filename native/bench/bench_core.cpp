// Benchmarks of the core with no Node: the GEMM (the machine's matrix-multiply speed, the floor
// the loss is measured against) and the fused loss forward+backward.
// Usage: bench_core [gemm|loss] [--json FILE] [--sizes 1024,2048,...] [--dim 128] [--reps N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "supcon/gemm.h"
#include "supcon/loss.h"
#include "supcon/thread_pool.h"

using namespace supcon;
using Clock = std::chrono::steady_clock;

template <typename F>
double medianSeconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "all";
  std::vector<int64_t> sizes = {1024, 2048, 4096, 8192};
  int64_t dim = 128;
  int reps = 3;
  const char* json = nullptr;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!std::strcmp(argv[i], "--dim") && i + 1 < argc) dim = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--sizes") && i + 1 < argc) {
      sizes.clear();
      for (char* tok = std::strtok(argv[++i], ","); tok; tok = std::strtok(nullptr, ",")) sizes.push_back(std::atoll(tok));
    }
  }
  std::printf("simd=%s threads=%d\n", simdName(), numThreads());
  std::string out = "{\"simd\":\"" + std::string(simdName()) + "\",\"threads\":" + std::to_string(numThreads());
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  if (what == "gemm" || what == "all") {
    out += ",\"gemm\":[";
    bool first = true;
    for (int64_t n : {512, 1024, 2048}) {
      std::vector<float> a(n * n), b(n * n), c(n * n);
      for (auto& v : a) v = g(rng);
      for (auto& v : b) v = g(rng);
      double t = medianSeconds(reps, [&] { sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n, true); });
      double gf = 2.0 * n * n * n / t / 1e9;
      std::printf("gemm %5lld^3: %8.2f ms  %7.1f GFLOP/s\n", (long long)n, t * 1e3, gf);
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s{\"n\":%lld,\"ms\":%.3f,\"gflops\":%.2f}", first ? "" : ",", (long long)n, t * 1e3, gf);
      out += buf;
      first = false;
    }
    out += "]";
  }
  if (what == "loss" || what == "all") {
    out += ",\"loss\":[";
    bool first = true;
    for (int64_t n : sizes) {
      const int64_t B = n / 2;
      std::vector<float> x(n * dim), grad(n * dim), per(n);
      for (auto& v : x) v = g(rng);
      for (int64_t r = 0; r < n; ++r) {
        double ss = 0;
        for (int64_t k = 0; k < dim; ++k) ss += double(x[r * dim + k]) * x[r * dim + k];
        for (int64_t k = 0; k < dim; ++k) x[r * dim + k] /= std::sqrt(ss);
      }
      std::vector<int32_t> labels(B);
      for (auto& l : labels) l = static_cast<int32_t>(rng() % 100);
      LossSpec spec;
      LossInputs in;
      in.features = x.data();
      in.batch = B;
      in.views = 2;
      in.dim = dim;
      in.labels = labels.data();
      ForwardResult res;
      int r = n >= 32768 ? 1 : reps;
      double t = medianSeconds(r, [&] {
        Status st = forwardBackward(spec, in, RunOptions{}, per.data(), grad.data(), &res);
        if (!st.isOk()) { std::fprintf(stderr, "%s\n", st.message().c_str()); std::exit(1); }
      });
      double gf = 8.0 * n * n * dim / t / 1e9;
      std::printf("loss N=%6lld D=%lld: %9.2f ms  %7.1f GFLOP/s (8 N^2 D)  extra %.1f MB  loss %.5f\n", (long long)n,
                  (long long)dim, t * 1e3, gf, res.workspaceBytes / 1e6, res.loss);
      char buf[200];
      std::snprintf(buf, sizeof buf, "%s{\"n\":%lld,\"dim\":%lld,\"ms\":%.3f,\"gflops\":%.2f,\"extraBytes\":%lld}",
                    first ? "" : ",", (long long)n, (long long)dim, t * 1e3, gf, (long long)res.workspaceBytes);
      out += buf;
      first = false;
    }
    out += "]";
  }
  out += "}\n";
  if (json) {
    FILE* f = std::fopen(json, "w");
    if (f) { std::fputs(out.c_str(), f); std::fclose(f); }
  }
  return 0;
}
