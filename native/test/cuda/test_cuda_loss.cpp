// The CUDA loss on a real GPU, through the public API (Device::kCuda), against the float64
// reference and the CPU core over every option, plus tensor-core precision bounds, cross-device
// statistics, split independence, statuses and memory accounting (cuda_loss_checks.h).
// With no usable device it checks that the CUDA path returns a clean kUnavailable status and
// that Device::kAuto falls back to the CPU, prints "skipped: no CUDA device (reason)" and passes.
#include <cstdio>

#include "cuda_loss_checks.h"
#include "edge_cases.h"
#include "loss_cuda.h"
#include "supcon/device.h"

using namespace supcon;
using namespace supcon_cuda_test;

namespace {

const Backend& gpu() {
  static const Backend b = [] {
    Backend x;
    x.name = "cuda";
    x.forward = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, float* per, float* stats,
                   ForwardResult* r) { return forward(s, in, run, per, stats, r); };
    x.backward = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, const float* stats,
                    const float* up, int64_t n, float* grad, BackwardResult* r) {
      return backward(s, in, run, stats, up, n, grad, r);
    };
    x.backwardContrast = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, const float* stats,
                            const float* up, int64_t n, float* grad, float* contrastGrad, BackwardResult* r) {
      return backward(s, in, run, stats, up, n, grad, contrastGrad, r);
    };
    return x;
  }();
  return b;
}

bool tensorCores() {
  const CudaInfo& info = cudaInfo();
  return !info.devices.empty() && info.devices[0].computeMajor >= 8;
}

// No device: clean statuses, never an abort; kAuto falls back to the CPU.
int noDeviceChecks(const std::string& reason) {
  std::mt19937 rng(1);
  Problem p = makeProblem(rng, 16, 2, 8, 3, 0, true, false);
  std::vector<float> per(32), stats(size_t(statsSize(p.spec, p.inputs()))), grad(p.features.size());
  const Status st = forward(p.spec, p.inputs(), cudaRun(), per.data(), stats.data(), nullptr);
  CHECK(st.code() == StatusCode::kUnavailable) << "forward on a machine without CUDA: " << st.message();
  CHECK(!st.message().empty());
  const float one = 1.0f;
  const Status sb = backward(p.spec, p.inputs(), cudaRun(), stats.data(), &one, 1, grad.data(), nullptr);
  CHECK(sb.code() == StatusCode::kUnavailable) << sb.message();
  cuda::PhaseTiming timing;
  const Status sfb = cuda::forwardBackwardTimed(p.spec, p.inputs(), cudaRun(), per.data(), grad.data(), nullptr, &timing);
  CHECK(sfb.code() == StatusCode::kUnavailable) << sfb.message();
  RunOptions autoRun;
  autoRun.device = Device::kAuto;
  const Run viaAuto = runLoss(&gpu(), p, autoRun);
  const Run cpu = runLoss(nullptr, p, RunOptions{});
  CHECK(viaAuto.status.isOk() && viaAuto.fwd.loss == cpu.fwd.loss && viaAuto.grad == cpu.grad)
      << "kAuto must fall back to the CPU: " << viaAuto.status.message();
  CHECK(!cudaInfo().compiled || !reason.empty());
  std::printf("  kCuda status without a device: %s\n", st.message().c_str());
  return supcon_test::Registry::get().failures;
}

}  // namespace

TEST(cuda_edge_case_table) {
  supcon_test::EdgeBackend b{"cuda", cudaRun(), gpu().forward, gpu().backward};
  CHECK(supcon_test::runEdgeCaseTable(b) > 20);
}

TEST(cuda_sweep_matches_reference_and_cpu) {
  const std::vector<SweepSize> sizes = {{2, 1, 3}, {7, 2, 1}, {33, 2, 64}, {130, 1, 128}, {64, 4, 257},
                                        {129, 2, 17}, {256, 2, 32}, {100, 2, 200}, {40, 2, 300}};
  const int cases = sweepAgainstReference(gpu(), sizes, true, 2024);
  CHECK(cases > 300) << cases;
}

TEST(cuda_larger_problems_match_cpu) {
  // Many row blocks and column tiles; the CPU core (itself held to the reference) is the oracle.
  std::mt19937 rng(5);
  struct Case { int64_t batch, views, dim, extra; bool one, in, norm, labeled; };
  const Case cases[] = {{2048, 2, 128, 0, false, false, false, true}, {1500, 2, 256, 0, false, true, true, true},
                        {1000, 3, 96, 700, false, false, true, true}, {1200, 2, 300, 0, true, true, false, false},
                        {3000, 2, 64, 0, false, false, false, false}};
  for (const Case& c : cases) {
    Problem p = makeProblem(rng, c.batch, c.views, c.dim, 50, c.extra, c.labeled, c.norm);
    p.spec.contrastMode = c.one ? ContrastMode::kOne : ContrastMode::kAll;
    p.spec.variant = c.in ? Variant::kIn : Variant::kOut;
    expectMatchesCpu(runLoss(&gpu(), p, cudaRun()), runLoss(nullptr, p, RunOptions{}), p, "large " + describe(p));
  }
}

TEST(cuda_tensor_core_engines_within_bounds) {
  const std::vector<SweepSize> sizes = {{100, 2, 64}, {64, 2, 128}, {50, 2, 256}};
  if (!tensorCores()) {
    // Pre-sm_80: the request runs the float32 engine, bitwise.
    std::mt19937 rng(2);
    Problem p = makeProblem(rng, 60, 2, 40, 4, 0, true, false);
    const Run bf = runLoss(&gpu(), p, cudaRun(Precision::kBf16)), fp = runLoss(&gpu(), p, cudaRun());
    CHECK(bf.grad == fp.grad && bf.fwd.loss == fp.fwd.loss);
    std::printf("  device below sm_80: tf32/bf16 run the fp32 engine\n");
    return;
  }
  CHECK(cuda::engineName(cudaRun(Precision::kTf32)) == "tf32-wmma");
  CHECK(cuda::engineName(cudaRun(Precision::kBf16)) == "bf16-wmma");
  precisionSweep(gpu(), Precision::kTf32, sizes, 31);
  precisionSweep(gpu(), Precision::kBf16, sizes, 32);
}

TEST(cuda_cross_device_stats) { crossDeviceStats(gpu(), 5); }

TEST(cuda_contrast_gradient_matches_reference) { CHECK(contrastGradientsMatchReference(gpu(), 23) == 12); }

TEST(cuda_splits_agree) { splitsAgree(gpu(), 900, 72, 9); }

TEST(cuda_edge_cases) { edgeCases(gpu(), 11); }

TEST(cuda_workspace_is_linear) { workspaceIsLinear(gpu(), 8192, 128, 3); }

TEST(cuda_statuses) { statuses(gpu(), 13); }

TEST(cuda_timed_entry_point_matches) {
  std::mt19937 rng(17);
  Problem p = makeProblem(rng, 500, 2, 128, 20, 0, true, true);
  const Run cpu = runLoss(nullptr, p, RunOptions{});
  Run r;
  r.perAnchor.assign(size_t(p.anchors()), 0);
  r.grad.assign(p.features.size(), 0);
  r.stats = cpu.stats;
  cuda::PhaseTiming t;
  r.status = cuda::forwardBackwardTimed(p.spec, p.inputs(), cudaRun(), r.perAnchor.data(), r.grad.data(), &r.fwd, &t);
  expectMatchesCpu(r, cpu, p, "forwardBackwardTimed");
  CHECK(t.forwardMs > 0 && t.backwardMs > 0) << t.forwardMs << " " << t.backwardMs;
}

int main(int argc, char** argv) {
  const CudaInfo& info = cudaInfo();
  std::printf("CUDA runtime %s, compiled %d, devices %zu\n", info.runtimeVersion.c_str(), int(info.compiled),
              info.devices.size());
  if (info.devices.empty()) {
    const int failures = noDeviceChecks(info.reason);
    std::printf("skipped: no CUDA device (%s)\n", info.reason.c_str());
    return failures == 0 ? 0 : 1;
  }
  for (const auto& d : info.devices)
    std::printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", d.index, d.name.c_str(), d.computeMajor, d.computeMinor,
                d.multiprocessors, double(d.totalMemoryBytes) / (1 << 30));
  return supcon_test::runAll(argc, argv);
}
