// The CUDA kernels and host orchestration, compiled for the CPU against the CUDA emulator
// (native/cuda/emu/cuda_emu.h) and held to the same checks as on a GPU: the float64 reference,
// the CPU core, splits, precision bounds, statuses, memory accounting. This is what verifies
// the kernel logic on machines without a GPU; test_cuda_loss runs the same checks on hardware.
#define SUPCON_CUDA_EMULATION 1
#include "loss_cuda_impl.h"

#include "cuda_loss_checks.h"
#include "edge_cases.h"

using namespace supcon;
using namespace supcon_cuda_test;

namespace {

Backend emulatorBackend() {
  Backend b;
  b.name = "emulator";
  b.forward = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, float* per, float* stats,
                 ForwardResult* r) {
    SUPCON_RETURN_IF_ERROR(validate(s, in));
    ForwardResult local;
    return cuda_emu::forward(s, in, run, per, stats, r ? r : &local);
  };
  b.backward = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, const float* stats,
                  const float* up, int64_t n, float* grad, BackwardResult* r) {
    SUPCON_RETURN_IF_ERROR(validateBackward(s, in, stats, up, n));
    BackwardResult local;
    return cuda_emu::backward(s, in, run, stats, up, grad, nullptr, r ? r : &local);
  };
  b.backwardContrast = [](const LossSpec& s, const LossInputs& in, const RunOptions& run, const float* stats,
                          const float* up, int64_t n, float* grad, float* contrastGrad, BackwardResult* r) {
    SUPCON_RETURN_IF_ERROR(validateBackward(s, in, stats, up, n));
    BackwardResult local;
    return cuda_emu::backward(s, in, run, stats, up, grad, contrastGrad, r ? r : &local);
  };
  return b;
}

const Backend& emu() {
  static const Backend b = emulatorBackend();
  return b;
}

void expectNoDeviceMemoryLeft(const char* after) {
  CHECK(supcon_emu::state().liveBytes == 0) << supcon_emu::state().liveBytes << " device bytes still allocated after "
                                            << after;
}

}  // namespace

TEST(emu_sweep_matches_reference_and_cpu) {
  // D = 1, 17, 64 (one 64-wide chunk), 96, 130 and 300 (the 256-wide tiles, two chunks).
  const std::vector<SweepSize> sizes = {{2, 1, 3}, {7, 2, 17}, {33, 2, 64}, {70, 1, 96}, {45, 2, 130}, {20, 3, 300}};
  const int cases = sweepAgainstReference(emu(), sizes, true, 2024);
  CHECK(cases > 200) << cases;
  expectNoDeviceMemoryLeft("the sweep");
}

TEST(emu_multi_tile_problems) {
  // Several row blocks and column tiles, uneven edges, every pass.
  std::mt19937 rng(7);
  Problem a = makeProblem(rng, 150, 2, 40, 9, 0, true, false);  // symmetric, 3 row blocks
  expectMatchesReference(runLoss(&emu(), a, cudaRun()), a, Tolerance{}, "symmetric N=300");
  Problem b = makeProblem(rng, 100, 3, 33, 5, 140, true, true);  // general: all + extra
  b.spec.variant = Variant::kIn;
  expectMatchesReference(runLoss(&emu(), b, cudaRun()), b, Tolerance{}, "general N=300 M=140 in");
  Problem c = makeProblem(rng, 200, 2, 20, 3, 0, false, false);  // SimCLR 'one'
  c.spec.contrastMode = ContrastMode::kOne;
  expectMatchesReference(runLoss(&emu(), c, cudaRun()), c, Tolerance{}, "SimCLR one N=400");
  expectNoDeviceMemoryLeft("multi-tile problems");
}

TEST(emu_tensor_core_engines_within_bounds) {
  const std::vector<SweepSize> sizes = {{40, 2, 48}, {24, 2, 140}};
  precisionSweep(emu(), Precision::kTf32, sizes, 31);
  precisionSweep(emu(), Precision::kBf16, sizes, 32);
  expectNoDeviceMemoryLeft("the precision sweeps");
}

TEST(emu_cross_device_stats) { crossDeviceStats(emu(), 5); }

TEST(emu_contrast_gradient_matches_reference) {
  CHECK(contrastGradientsMatchReference(emu(), 23) == 12);
  expectNoDeviceMemoryLeft("the contrast gradients");
}

TEST(emu_splits_agree) {
  splitsAgree(emu(), 140, 24, 9);
  expectNoDeviceMemoryLeft("the split runs");
}

TEST(emu_edge_cases) { edgeCases(emu(), 11); }

TEST(emu_forward_backward_uploads_once) {
  // forward + backward in one call uploads the features once; two calls upload them twice.
  std::mt19937 rng(4);
  Problem p = makeProblem(rng, 120, 2, 64, 6, 0, true, true);
  const size_t featureBytes = p.features.size() * sizeof(float);
  std::vector<float> per(size_t(p.anchors())), stats(size_t(statsSize(p.spec, p.inputs()))), grad(p.features.size());
  ForwardResult fr;
  supcon_emu::state().hostToDeviceBytes = 0;
  Status st = cuda_emu::forwardBackward(p.spec, p.inputs(), cudaRun(), per.data(), grad.data(), nullptr, &fr, nullptr);
  const size_t once = supcon_emu::state().hostToDeviceBytes;
  CHECK(st.isOk()) << st.message();
  CHECK(once >= featureBytes && once < 2 * featureBytes) << once << " bytes uploaded for " << featureBytes;
  supcon_emu::state().hostToDeviceBytes = 0;
  const std::vector<float> up(1, 1.0f);
  st = cuda_emu::forward(p.spec, p.inputs(), cudaRun(), per.data(), stats.data(), &fr);
  BackwardResult br;
  if (st.isOk()) st = cuda_emu::backward(p.spec, p.inputs(), cudaRun(), stats.data(), up.data(), grad.data(), nullptr, &br);
  CHECK(st.isOk() && supcon_emu::state().hostToDeviceBytes >= 2 * featureBytes);
  expectNoDeviceMemoryLeft("the upload counts");
}

TEST(emu_edge_case_table) {
  supcon_test::EdgeBackend b{"emulator", cudaRun(), emu().forward, emu().backward};
  CHECK(supcon_test::runEdgeCaseTable(b) > 20);
  expectNoDeviceMemoryLeft("the edge-case table");
}

TEST(emu_workspace_is_linear) { workspaceIsLinear(emu(), 300, 64, 3); }

TEST(emu_statuses) {
  statuses(emu(), 13);
  expectNoDeviceMemoryLeft("out-of-memory failures");
}

TEST(emu_no_device_is_unavailable) {
  std::mt19937 rng(1);
  Problem p = makeProblem(rng, 8, 2, 8, 2, 0, true, false);
  supcon_emu::config().deviceAbsent = true;
  std::vector<float> per(16), stats(size_t(statsSize(p.spec, p.inputs())));
  const Status st = emu().forward(p.spec, p.inputs(), cudaRun(), per.data(), stats.data(), nullptr);
  supcon_emu::config().deviceAbsent = false;
  CHECK(st.code() == StatusCode::kUnavailable && st.message().find("no CUDA device") != std::string::npos)
      << st.message();
}

TEST(emu_pre_ampere_device_runs_fp32) {
  // Compute capability 7.5: tf32/bf16 requests run the float32 engine (bitwise the fp32 result).
  std::mt19937 rng(2);
  Problem p = makeProblem(rng, 30, 2, 20, 4, 0, true, false);
  supcon_emu::config().major = 7;
  supcon_emu::config().minor = 5;
  const Run bf = runLoss(&emu(), p, cudaRun(Precision::kBf16));
  const Run fp = runLoss(&emu(), p, cudaRun(Precision::kFp32));
  supcon_emu::config().major = 8;
  supcon_emu::config().minor = 0;
  CHECK(bf.status.isOk() && fp.status.isOk());
  CHECK(bf.grad == fp.grad && bf.fwd.loss == fp.fwd.loss);
}

TEST(emu_shared_memory_limit_is_a_status) {
  std::mt19937 rng(3);
  Problem p = makeProblem(rng, 10, 2, 8, 2, 0, true, false);
  supcon_emu::config().sharedMemPerBlockOptin = 16 * 1024;  // below every kernel's need
  std::vector<float> per(20), stats(size_t(statsSize(p.spec, p.inputs())));
  const Status st = emu().forward(p.spec, p.inputs(), cudaRun(), per.data(), stats.data(), nullptr);
  supcon_emu::config().sharedMemPerBlockOptin = 99 * 1024;
  CHECK(st.code() == StatusCode::kUnavailable && st.message().find("shared memory") != std::string::npos)
      << st.message();
  expectNoDeviceMemoryLeft("a refused launch");
}

SUPCON_TEST_MAIN
