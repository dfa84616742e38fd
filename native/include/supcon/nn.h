// Neural-network kernels of the core (the native tfjs CPU kernels call these): 2-D convolution
// forward / input gradient / filter gradient, batched matrix multiply, and the fused bias +
// activation epilogue. All float32, NHWC, row-major; no Node headers.
//
// Every convolution is the project's one GEMM (gemm.h) over operands that pack image patches
// straight from the NHWC tensor into micro-panels (implicit im2col); see native/core/nn_conv.cpp.
#pragma once
#include <cstdint>
#include <functional>

#include "supcon/status.h"

namespace supcon {
namespace nn {

// Geometry of a 2-D convolution, every size explicit (the caller resolves 'same'/'valid').
//   x      [batch, inHeight, inWidth, inChannels]
//   filter [filterHeight, filterWidth, inChannels, outChannels]   (tfjs / TensorFlow layout)
//   y      [batch, outHeight, outWidth, outChannels]
// y[n, oh, ow, co] = sum_{kh, kw, ci} x[n, oh*strideH - padTop + kh*dilationH,
//                                        ow*strideW - padLeft + kw*dilationW, ci] * filter[kh, kw, ci, co]
// with x read as 0 outside the image. Padding at the bottom/right is implied by outHeight/outWidth.
struct Conv2DGeometry {
  int64_t batch = 0;
  int64_t inHeight = 0, inWidth = 0, inChannels = 0;
  int64_t outHeight = 0, outWidth = 0, outChannels = 0;
  int64_t filterHeight = 0, filterWidth = 0;
  int64_t strideHeight = 1, strideWidth = 1;
  int64_t dilationHeight = 1, dilationWidth = 1;
  int64_t padTop = 0, padLeft = 0;

  int64_t inputSize() const { return batch * inHeight * inWidth * inChannels; }
  int64_t outputSize() const { return batch * outHeight * outWidth * outChannels; }
  int64_t filterSize() const { return filterHeight * filterWidth * inChannels * outChannels; }
  // Multiply-adds of one forward pass times 2.
  double flops() const {
    return 2.0 * double(batch * outHeight * outWidth) * double(filterHeight * filterWidth * inChannels) *
           double(outChannels);
  }
};

// Checks sizes >= 1, strides/dilations >= 1, 0 <= padding, and that every tensor stays below
// 2^31 elements (what the binding's typed arrays can hold; it also keeps indices in range).
Status validate(const Conv2DGeometry& g);

// Output nonlinearity applied after the optional bias (tfjs's fused activations).
enum class Activation {
  kLinear = 0,
  kRelu = 1,
  kRelu6 = 2,
  kLeakyRelu = 3,  // x < 0 ? alpha x : x
  kElu = 4,        // x < 0 ? exp(x) - 1 : x
  kSigmoid = 5,    // 1 / (1 + exp(-x))
};

// y = act(y + bias) applied to a row-major [rows, cols] block; bias has `cols` entries or is null.
struct Epilogue {
  const float* bias = nullptr;
  Activation activation = Activation::kLinear;
  float leakyReluAlpha = 0.2f;
  bool active() const { return bias != nullptr || activation != Activation::kLinear; }
};

// How conv2dForward and conv2dBackpropFilter compute.
enum class ConvAlgorithm {
  kAuto = 0,    // kDirect where it fits (unit dilation; forward: outC <= 4 SIMD vectors; filter
                // gradient: inC and outC <= 64), else kGemm
  kGemm = 1,    // implicit-im2col packing into the GEMM (any geometry)
  kDirect = 2,  // the direct kernels of nn_conv_direct.cpp (refused where they do not fit)
};

// y = epilogue(conv2d(x, filter)). x, filter, y as in Conv2DGeometry; y is overwritten.
Status conv2dForward(const Conv2DGeometry& g, const float* x, const float* filter, const Epilogue& epilogue,
                     float* y, ConvAlgorithm algorithm = ConvAlgorithm::kAuto);

// How conv2dBackpropInput computes dx.
enum class BackpropInputAlgorithm {
  kAuto = 0,       // kDirect for narrow layers, and for stride 1 with >= 192 input channels;
                   // kGemmCol2Im otherwise
  kDirect = 1,     // stride 1: a forward convolution of dy with the flipped, transposed filter;
                   // stride > 1 (unit dilation, inC <= 4 SIMD vectors): the direct kernel phase by
                   // phase (nn_conv_direct.cpp)
  kGemmCol2Im = 2, // dcol = dy filter^T by the GEMM, then scatter-added into dx (any stride)
};

// dx = d(sum y * dy)/dx for y = conv2d(x, filter): dy [batch, outH, outW, outC] -> dx [batch, inH,
// inW, inC] (overwritten).
Status conv2dBackpropInput(const Conv2DGeometry& g, const float* dy, const float* filter, float* dx,
                           BackpropInputAlgorithm algorithm = BackpropInputAlgorithm::kAuto);

// dfilter = d(sum y * dy)/dfilter: x and dy -> dfilter [fH, fW, inC, outC] (overwritten).
Status conv2dBackpropFilter(const Conv2DGeometry& g, const float* x, const float* dy, float* dfilter,
                            ConvAlgorithm algorithm = ConvAlgorithm::kAuto);

// ---------------------------------------------------------------------------------------------
// Convolution + batch normalization (+ residual) (+ ReLU): the unit of a ResNet, one forward
// and one backward call (docs/kernels.md derives the gradient).
//
//   z = conv2d(x, filter)                                  [batch, outH, outW, C], C = outChannels
//   training:  mean_c, var_c = mean and biased variance of z over (batch, outH, outW)
//   inference: mean_c, var_c = movingMean_c, movingVariance_c
//   y = act(gamma_c (z - mean_c) / sqrt(var_c + epsilon) + beta_c (+ residual)),  act = ReLU or identity
//
// Training also returns the moving averages as tfjs's BatchNormalization layer updates them:
//   moving' = moving - (moving - batch) * (1 - momentum)     (batch variance biased, as tfjs)
struct ConvBatchNormForwardArgs {
  Conv2DGeometry conv;
  const float* x = nullptr;              // [batch, inH, inW, inC]
  const float* filter = nullptr;         // [fH, fW, inC, C]
  const float* gamma = nullptr;          // [C]
  const float* beta = nullptr;           // [C]
  const float* movingMean = nullptr;     // [C]
  const float* movingVariance = nullptr; // [C]
  const float* residual = nullptr;       // [outputSize] or null
  bool relu = false;
  bool training = false;
  float epsilon = 1e-3f;
  float momentum = 0.99f;                // training only
  // Outputs.
  float* y = nullptr;                    // [outputSize]
  float* z = nullptr;                    // [outputSize], the conv output the backward needs; may be null
  float* mean = nullptr;                 // [C] the statistics used (training: batch; inference: moving)
  float* variance = nullptr;             // [C]
  float* newMovingMean = nullptr;        // [C] training only (ignored in inference)
  float* newMovingVariance = nullptr;    // [C]
  // The number of values per channel the statistics were taken over (training: this process's
  // batch pixels, or the whole distributed batch's with reduceMoments); may be null.
  double* count = nullptr;
  // Synchronized batch norm (training only; docs/distributed.md): when set, it is called once
  // with this process's per-channel moments of z, the count (the same for every channel), the
  // means [C] and the sums of squared deviations M2 [C], in float64, and must replace them with
  // those of the whole batch across processes. The normalization, the moving averages and
  // mean/variance then use them. The core knows nothing of how (the binding uses MPI).
  std::function<Status(int64_t channels, double* count, double* mean, double* m2)> reduceMoments;
};
Status convBatchNormForward(const ConvBatchNormForwardArgs& a);

// Gradients of convBatchNormForward's y with respect to x, filter, gamma, beta and the residual,
// given dy. z, y, mean and variance are what the forward wrote (with the same training flag).
// dz, the gradient at the convolution's output, is written to `dz` when given (so a caller can
// take the convolution's gradients later, or only the ones it needs); dx and dfilter are
// skipped when null.
struct ConvBatchNormBackwardArgs {
  Conv2DGeometry conv;
  const float* x = nullptr;
  const float* filter = nullptr;
  const float* gamma = nullptr;
  const float* z = nullptr;
  const float* y = nullptr;
  const float* mean = nullptr;
  const float* variance = nullptr;
  const float* dy = nullptr;             // [outputSize]
  bool relu = false;
  bool training = false;
  float epsilon = 1e-3f;
  // Outputs (all overwritten).
  float* dx = nullptr;                   // [inputSize], or null to skip the input gradient
  float* dfilter = nullptr;              // [filterSize], or null to skip the filter gradient
  float* dgamma = nullptr;               // [C]
  float* dbeta = nullptr;                // [C]
  float* dresidual = nullptr;            // [outputSize] (dy through the ReLU), or null
  float* dz = nullptr;                   // [outputSize], or null (internal scratch)
  // Synchronized batch norm (training only): the count the forward's statistics were taken over
  // (its `count` output; 0 = this process's pixels), and a reduction called once with this
  // process's per-channel sums of g and of g (z - mean) (float64 [C]) that must replace them with
  // their sums over the processes; dz then follows from the whole batch's. dgamma, dbeta (and
  // dfilter) stay this process's: summed over the processes, they are the whole batch's.
  double count = 0;
  std::function<Status(int64_t channels, double* sumG, double* sumGZ)> reduceSums;
};
Status convBatchNormBackward(const ConvBatchNormBackwardArgs& a);

// ---------------------------------------------------------------------------------------------
// Momentum optimizers over many variables in one call (src/train/optimizers.ts documents the
// rules). Each variable's new value and momentum buffer go to separate outputs.
//
//   SGD (PyTorch's rule, dampening 0):  d = g + wd w;  b' = m b + d;  w' = w - lr (nesterov ? d + m b' : b')
//   LARS (You et al. 2017):             trust = eta ||w|| / (||g|| + wd ||w||) (1 if a norm is 0)
//                                       b' = m b + lr trust (g + wd w);  w' = w - b'
// A variable with decay = false gets no weight decay (and, for LARS, b' = m b + lr g).
enum class OptimizerKind { kSgd = 0, kLars = 1 };

struct OptimizerVariable {
  const float* value = nullptr;
  const float* grad = nullptr;
  const float* buffer = nullptr;  // momentum; null reads as zeros (the first step)
  float* newValue = nullptr;
  float* newBuffer = nullptr;
  int64_t size = 0;
  bool decay = true;
};

struct OptimizerStep {
  OptimizerKind kind = OptimizerKind::kSgd;
  float learningRate = 0.0f;
  float momentum = 0.9f;
  float weightDecay = 0.0f;
  bool nesterov = false;          // SGD only
  float trustCoefficient = 1e-3f;  // LARS only
};

Status optimizerUpdate(const OptimizerStep& step, const OptimizerVariable* variables, int64_t count);

// Batched C[b] = epilogue(op(A[b % batchA]) op(B[b % batchB])), b in [0, max(batchA, batchB)).
// op(A) is M x K (A stored K x M when transposeA), op(B) is K x N (B stored N x K when
// transposeB); C is [batch, M, N]. batchA and batchB must be equal or one of them 1.
struct MatMulShape {
  int64_t batchA = 1, batchB = 1;
  int64_t m = 0, n = 0, k = 0;
  bool transposeA = false, transposeB = false;
  int64_t batch() const { return batchA > batchB ? batchA : batchB; }
};

Status validate(const MatMulShape& s);

Status batchMatMul(const MatMulShape& s, const float* a, const float* b, const Epilogue& epilogue, float* c);

// The convolutions keep per-thread scratch buffers between calls (a fresh multi-megabyte buffer
// costs more in page faults than the work); this frees them. Not while a kernel is running.
void releaseScratchMemory();

// y = act(y + bias) on a row-major [rows, cols] block in place, split over the thread pool.
void applyEpilogue(const Epilogue& epilogue, int64_t rows, int64_t cols, float* y);


// ---------------------------------------------------------------------------------------------
// Elementwise kernels, reductions and tiling on dense row-major tensors of rank <= kMaxRank.

constexpr int kMaxRank = 8;

struct Shape {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
};

// Checks 0 <= rank <= kMaxRank, sizes >= 0 and fewer than 2^31 elements.
Status validate(const Shape& s);

enum class BinaryOp { kAdd = 0, kSub, kMul, kDiv, kSquaredDifference, kMaximum, kMinimum };

// The numpy/tfjs broadcast of two shapes (right-aligned; sizes equal or one of them 1).
Status broadcastShape(const Shape& a, const Shape& b, Shape* out);

// out = a (op) b with broadcasting; out has broadcastShape(a, b) elements.
Status binary(BinaryOp op, const Shape& aShape, const float* a, const Shape& bShape, const float* b, float* out);

enum class UnaryOp { kRelu = 0, kRelu6, kStep, kSquare, kNeg, kAbs, kSqrt, kRsqrt };

// out[i] = op(x[i]); kStep is x > 0 ? 1 : alpha (NaN stays NaN, as in tfjs).
Status unary(UnaryOp op, int64_t size, const float* x, float alpha, float* out);

// out = scale * sum of x over the axes with reduce[axis] true (double accumulation); out has the
// kept axes' sizes in order (keepDims only changes the shape the caller reports).
Status reduceSum(const Shape& xShape, const bool* reduce, const float* x, double scale, float* out);

// out = x repeated reps[i] times along each axis: out dims = x dims * reps.
Status tile(const Shape& xShape, const int64_t* reps, const float* x, float* out);

// tfjs's FusedBatchNorm: y[i] = offset[i % offLen] + (x[i] - mean[i % mLen]) * scale[i % sLen] /
// sqrt(variance[i % vLen] + epsilon). A missing offset is 0, a missing scale 1.
struct BatchNormArgs {
  int64_t size = 0;
  const float* x = nullptr;
  const float* mean = nullptr;
  int64_t meanSize = 0;
  const float* variance = nullptr;
  int64_t varianceSize = 0;
  const float* offset = nullptr;  // may be null
  int64_t offsetSize = 0;
  const float* scale = nullptr;   // may be null
  int64_t scaleSize = 0;
  float epsilon = 1e-3f;
};
Status batchNorm(const BatchNormArgs& args, float* y);

// ---------------------------------------------------------------------------------------------
// 2-D pooling (NHWC), with tfjs's semantics: windows clipped to the image; max ignores NaN and
// keeps the first maximum in row-major window order; average divides by the number of valid
// pixels; an empty window gives -inf (max) or NaN (average).

struct Pool2DGeometry {
  int64_t batch = 0;
  int64_t inHeight = 0, inWidth = 0, channels = 0;
  int64_t outHeight = 0, outWidth = 0;
  int64_t filterHeight = 0, filterWidth = 0;
  int64_t strideHeight = 1, strideWidth = 1;
  int64_t padTop = 0, padLeft = 0;

  int64_t inputSize() const { return batch * inHeight * inWidth * channels; }
  int64_t outputSize() const { return batch * outHeight * outWidth * channels; }
};

Status validate(const Pool2DGeometry& g);

enum class PoolType { kMax = 0, kAvg = 1 };

// y [batch, outH, outW, C] = pool of x [batch, inH, inW, C].
Status pool2d(PoolType type, const Pool2DGeometry& g, const float* x, float* y);

// dx [batch, inH, inW, C]: each window's dy goes to the first maximum of x in that window.
Status maxPool2dBackward(const Pool2DGeometry& g, const float* x, const float* dy, float* dx);

// dx: each window's dy / (filterH * filterW) added to every in-image pixel of the window (tfjs
// divides by the full window size here even where the forward divided by the valid count).
Status avgPool2dBackward(const Pool2DGeometry& g, const float* dy, float* dx);

}  // namespace nn
}  // namespace supcon
