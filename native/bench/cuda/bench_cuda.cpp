// Benchmark of the CUDA loss: forward + backward of the fused SupCon loss timed with CUDA events
// (supcon::cuda::forwardBackwardTimed), for D in {128, 256}, N in {4096 ... 1048576} and each
// precision, under a wall-clock budget: a size whose predicted time (the previous size's time
// scaled by N^2) does not fit the remaining budget is reported as skipped, not run.
//
// Reported per run: kernel time (forward + backward phases: the tile kernels and the O(N D)
// kernels, without host copies), end-to-end time of the host-pointer call, effective TFLOP/s
// = 8 N^2 D / kernel time (the nominal flop count of forward + backward; the symmetric schedule
// does 6 N^2 D, see docs/cuda.md), and the peak device memory of the call (the allocator's
// high-water mark). JSON goes to --json, a table to stdout.
//
// With --torch-dir DIR it also writes, for the torch comparison (bench/gpu/torch_supcon.py),
// deterministic inputs and this library's outputs for N in --torch-sizes (D = 128, fp32,
// unit rows passed with normalize off, 2 views, mean reduction):
//   DIR/manifest.json, DIR/N<n>_features.f32, DIR/N<n>_labels.i32, DIR/N<n>_grad.f32.
//
// Usage: bench_cuda [--json FILE] [--budget-s S] [--sizes 4096,16384] [--dims 128,256]
//                   [--precisions fp32,tf32,bf16] [--reps R] [--torch-dir DIR] [--torch-sizes ...]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "loss_cuda.h"
#include "supcon/device.h"
#include "supcon/loss.h"

using namespace supcon;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<int64_t> parseList(const char* s) {
  std::vector<int64_t> out;
  std::string str(s);
  size_t pos = 0;
  while (pos < str.size()) {
    size_t next = str.find(',', pos);
    if (next == std::string::npos) next = str.size();
    if (next > pos) out.push_back(std::atoll(str.substr(pos, next - pos).c_str()));
    pos = next + 1;
  }
  return out;
}

std::vector<std::string> parseNames(const char* s) {
  std::vector<std::string> out;
  std::string str(s);
  size_t pos = 0;
  while (pos < str.size()) {
    size_t next = str.find(',', pos);
    if (next == std::string::npos) next = str.size();
    if (next > pos) out.push_back(str.substr(pos, next - pos));
    pos = next + 1;
  }
  return out;
}

// Deterministic inputs: xorshift uniforms in [-1, 1), rows scaled to unit norm when asked.
void fillFeatures(std::vector<float>& x, int64_t rows, int64_t dim, uint64_t seed, bool unitRows) {
  x.resize(size_t(rows * dim));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
  for (auto& v : x) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    v = float(int64_t(s >> 40) - (int64_t(1) << 23)) / float(int64_t(1) << 23);
  }
  if (unitRows)
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t k = 0; k < dim; ++k) ss += double(x[r * dim + k]) * x[r * dim + k];
      const float inv = float(1.0 / std::sqrt(ss));
      for (int64_t k = 0; k < dim; ++k) x[r * dim + k] *= inv;
    }
}

void fillLabels(std::vector<int32_t>& y, int64_t batch, int classes, uint64_t seed) {
  y.resize(size_t(batch));
  uint64_t s = seed * 0xD1B54A32D192ED03ull + 7;
  for (auto& v : y) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    v = int32_t(s % uint64_t(classes));
  }
}

const char* precisionName(Precision p) { return p == Precision::kFp32 ? "fp32" : p == Precision::kTf32 ? "tf32" : "bf16"; }

struct Result {
  int64_t n = 0, dim = 0;
  std::string precision, engine, status = "ok", note;
  double kernelMs = 0, forwardMs = 0, backwardMs = 0, uploadMs = 0, downloadMs = 0, endToEndMs = 0, tflops = 0;
  double loss = 0;
  int64_t peakBytes = 0;
  int reps = 0;
};

std::string jsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

std::string toJson(const Result& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"n\":%lld,\"dim\":%lld,\"precision\":\"%s\",\"engine\":\"%s\",\"status\":\"%s\",\"note\":\"%s\","
                "\"reps\":%d,\"kernel_ms\":%.4f,\"forward_ms\":%.4f,\"backward_ms\":%.4f,\"upload_ms\":%.4f,"
                "\"download_ms\":%.4f,\"end_to_end_ms\":%.4f,\"effective_tflops\":%.4f,\"peak_device_bytes\":%lld,"
                "\"loss\":%.9g}",
                (long long)r.n, (long long)r.dim, r.precision.c_str(), r.engine.c_str(), jsonEscape(r.status).c_str(),
                jsonEscape(r.note).c_str(), r.reps, r.kernelMs, r.forwardMs, r.backwardMs, r.uploadMs, r.downloadMs,
                r.endToEndMs, r.tflops, (long long)r.peakBytes, r.loss);
  return buf;
}

// One configuration: median (by kernel time) of reps runs after nothing else; the first call of
// the process also pays for module loading, so the sweep starts with a small warm-up.
Result runOne(int64_t n, int64_t dim, Precision precision, int reps) {
  Result res;
  res.n = n;
  res.dim = dim;
  res.precision = precisionName(precision);
  RunOptions run;
  run.device = Device::kCuda;
  run.precision = precision;
  res.engine = cuda::engineName(run);
  const int64_t batch = n / 2;
  std::vector<float> x, grad(static_cast<size_t>(n * dim)), per(static_cast<size_t>(n));
  std::vector<int32_t> y;
  fillFeatures(x, n, dim, uint64_t(n) * 31 + uint64_t(dim), false);
  fillLabels(y, batch, 1000, uint64_t(n));
  LossInputs in;
  in.features = x.data();
  in.batch = batch;
  in.views = 2;
  in.dim = dim;
  in.labels = y.data();
  LossSpec spec;
  spec.normalize = true;  // raw projections in, as in training
  std::vector<Result> runs;
  for (int r = 0; r < reps; ++r) {
    cuda::PhaseTiming t;
    ForwardResult fr;
    const auto a = Clock::now();
    const Status st = cuda::forwardBackwardTimed(spec, in, run, per.data(), grad.data(), &fr, &t);
    const double wall = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
    if (!st.isOk()) {
      res.status = st.message();
      return res;
    }
    Result one = res;
    one.forwardMs = t.forwardMs;
    one.backwardMs = t.backwardMs;
    one.uploadMs = t.uploadMs;
    one.downloadMs = t.downloadMs;
    one.kernelMs = t.forwardMs + t.backwardMs;
    one.endToEndMs = wall;
    one.loss = fr.loss;
    one.peakBytes = fr.workspaceBytes;
    runs.push_back(one);
  }
  std::sort(runs.begin(), runs.end(), [](const Result& a, const Result& b) { return a.kernelMs < b.kernelMs; });
  Result med = runs[runs.size() / 2];
  med.reps = reps;
  med.tflops = med.kernelMs > 0 ? 8.0 * double(n) * double(n) * double(dim) / (med.kernelMs * 1e-3) / 1e12 : 0;
  if (!std::isfinite(med.loss)) med.status = "non-finite loss";
  return med;
}

bool writeFile(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), std::streamsize(bytes));
  return bool(f);
}

// Inputs and outputs for the PyTorch comparison.
std::string torchExport(const std::string& dir, const std::vector<int64_t>& sizes, int reps) {
  std::string entries;
  for (int64_t n : sizes) {
    const int64_t dim = 128, batch = n / 2;
    const float tau = 0.1f;
    std::vector<float> x, grad(static_cast<size_t>(n * dim)), per(static_cast<size_t>(n));
    std::vector<int32_t> y;
    fillFeatures(x, n, dim, uint64_t(n) + 5, true);
    fillLabels(y, batch, 100, uint64_t(n) + 9);
    LossInputs in;
    in.features = x.data();
    in.batch = batch;
    in.views = 2;
    in.dim = dim;
    in.labels = y.data();
    LossSpec spec;
    spec.temperature = tau;
    spec.normalize = false;  // unit rows already; the torch formulation does not normalize
    RunOptions run;
    run.device = Device::kCuda;
    std::vector<double> kernel, e2e;
    ForwardResult fr;
    Status st;
    for (int r = 0; r < reps && st.isOk(); ++r) {
      cuda::PhaseTiming t;
      const auto a = Clock::now();
      st = cuda::forwardBackwardTimed(spec, in, run, per.data(), grad.data(), &fr, &t);
      e2e.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
      kernel.push_back(t.forwardMs + t.backwardMs);
    }
    std::sort(kernel.begin(), kernel.end());
    std::sort(e2e.begin(), e2e.end());
    const std::string stem = dir + "/N" + std::to_string(n);
    bool ok = st.isOk() && writeFile(stem + "_features.f32", x.data(), x.size() * 4) &&
              writeFile(stem + "_labels.i32", y.data(), y.size() * 4) &&
              writeFile(stem + "_grad.f32", grad.data(), grad.size() * 4);
    char buf[768];
    std::snprintf(buf, sizeof buf,
                  "%s{\"n\":%lld,\"batch\":%lld,\"views\":2,\"dim\":%lld,\"temperature\":%g,\"base_temperature\":%g,"
                  "\"status\":\"%s\",\"loss\":%.9g,\"kernel_ms\":%.4f,\"end_to_end_ms\":%.4f,\"features\":\"N%lld_features.f32\","
                  "\"labels\":\"N%lld_labels.i32\",\"grad\":\"N%lld_grad.f32\"}",
                  entries.empty() ? "" : ",", (long long)n, (long long)batch, (long long)dim, tau, tau,
                  ok ? "ok" : jsonEscape(st.isOk() ? "could not write files" : st.message()).c_str(), fr.loss,
                  kernel.empty() ? 0.0 : kernel[kernel.size() / 2], e2e.empty() ? 0.0 : e2e[e2e.size() / 2],
                  (long long)n, (long long)n, (long long)n);
    entries += buf;
    std::printf("torch export N=%lld: %s, loss %.6f, kernel %.3f ms\n", (long long)n, ok ? "ok" : st.message().c_str(),
                fr.loss, kernel.empty() ? 0.0 : kernel[kernel.size() / 2]);
    std::fflush(stdout);
  }
  const std::string manifest = "{\"entries\":[" + entries + "]}\n";
  writeFile(dir + "/manifest.json", manifest.data(), manifest.size());
  return manifest;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {4096, 16384, 65536, 262144, 1048576};
  std::vector<int64_t> dims = {128, 256};
  std::vector<std::string> precisionNames = {"fp32", "tf32", "bf16"};
  std::vector<int64_t> torchSizes = {4096, 8192, 16384, 32768};
  double budget = 240;
  int reps = 3;
  const char* json = nullptr;
  const char* torchDir = nullptr;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--json")) json = next();
    else if (!std::strcmp(argv[i], "--budget-s")) budget = std::atof(next());
    else if (!std::strcmp(argv[i], "--sizes")) sizes = parseList(next());
    else if (!std::strcmp(argv[i], "--dims")) dims = parseList(next());
    else if (!std::strcmp(argv[i], "--precisions")) precisionNames = parseNames(next());
    else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(next()));
    else if (!std::strcmp(argv[i], "--torch-dir")) torchDir = next();
    else if (!std::strcmp(argv[i], "--torch-sizes")) torchSizes = parseList(next());
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  const CudaInfo& info = cudaInfo();
  std::string device = info.devices.empty() ? "" : info.devices[0].name;
  std::printf("CUDA runtime %s; device: %s\n", info.runtimeVersion.c_str(),
              info.devices.empty() ? ("none (" + info.reason + ")").c_str() : device.c_str());
  if (info.devices.empty()) {
    const std::string out = "{\"status\":\"skipped\",\"reason\":\"" + jsonEscape(info.reason) + "\"}\n";
    if (json) writeFile(json, out.data(), out.size());
    std::printf("skipped: no CUDA device (%s)\n", info.reason.c_str());
    return 0;
  }
  std::vector<Precision> precisions;
  for (const auto& p : precisionNames)
    precisions.push_back(p == "tf32" ? Precision::kTf32 : p == "bf16" ? Precision::kBf16 : Precision::kFp32);

  const auto start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  // Warm-up: module load and first-touch costs stay out of the measurements.
  runOne(2048, 128, Precision::kFp32, 1);

  std::string torchManifest;
  if (torchDir) torchManifest = torchExport(torchDir, torchSizes, reps);

  std::vector<Result> results;
  std::printf("\n%9s %4s %5s %10s %11s %11s %11s %12s %9s %10s  %s\n", "N", "D", "prec", "engine", "kernel ms",
              "fwd ms", "bwd ms", "end2end ms", "TFLOP/s", "peak MiB", "status");
  // Sizes ascending outermost, so every configuration gets its small sizes before any gets huge.
  for (int64_t n : sizes)
    for (int64_t dim : dims)
      for (Precision prec : precisions) {
        Result r;
        r.n = n;
        r.dim = dim;
        r.precision = precisionName(prec);
        // Predict from the last finished run of this configuration (time ~ N^2).
        double predicted = -1;
        for (auto it = results.rbegin(); it != results.rend(); ++it)
          if (it->dim == dim && it->precision == r.precision && it->status == "ok") {
            predicted = it->endToEndMs * 1e-3 * double(n) / double(it->n) * double(n) / double(it->n);
            break;
          }
        const bool hadFailure = std::any_of(results.begin(), results.end(), [&](const Result& o) {
          return o.dim == dim && o.precision == r.precision && o.status != "ok" && o.status.rfind("skipped", 0) != 0;
        });
        const double left = budget - elapsed();
        // Repeat only what is cheap next to the budget left.
        const int repsHere = predicted < 0 ? (n <= 16384 ? reps : 1) : (predicted * reps <= 0.25 * left ? reps : 1);
        if (hadFailure) {
          r.status = "skipped: a smaller size of this configuration failed";
        } else if (predicted < 0 && n > 16384) {
          r.status = "skipped: no smaller size of this configuration finished to predict from";
        } else if (predicted > left) {
          char buf[160];
          std::snprintf(buf, sizeof buf, "skipped: predicted %.1f s exceeds the remaining budget %.1f s", predicted, left);
          r.status = buf;
        } else {
          r = runOne(n, dim, prec, repsHere);
        }
        results.push_back(r);
        std::printf("%9lld %4lld %5s %10s %11.3f %11.3f %11.3f %12.3f %9.2f %10.1f  %s\n", (long long)n,
                    (long long)dim, r.precision.c_str(), r.engine.c_str(), r.kernelMs, r.forwardMs, r.backwardMs,
                    r.endToEndMs, r.tflops, double(r.peakBytes) / (1 << 20), r.status.c_str());
        std::fflush(stdout);
      }

  std::string out = "{\"device\":\"" + jsonEscape(device) + "\",\"runtime\":\"" + info.runtimeVersion +
                    "\",\"flops_formula\":\"8*N^2*D per forward+backward\",\"budget_s\":" + std::to_string(budget) +
                    ",\"elapsed_s\":" + std::to_string(elapsed()) + ",\"results\":[";
  for (size_t i = 0; i < results.size(); ++i) out += (i ? "," : "") + toJson(results[i]);
  out += "]";
  if (!torchManifest.empty()) out += ",\"torch_export\":" + torchManifest.substr(0, torchManifest.size() - 1);
  out += "}\n";
  if (json && !writeFile(json, out.data(), out.size())) {
    std::fprintf(stderr, "could not write %s\n", json);
    return 1;
  }
  const bool anyError = std::any_of(results.begin(), results.end(), [](const Result& r) {
    return r.status != "ok" && r.status.rfind("skipped", 0) != 0;
  });
  return anyError ? 1 : 0;
}
