// Direct convolution for narrow layers (a small ResNet's 1..64 channels): the GEMM's implicit
// im2col packs every patch element once per use, which for a 16-channel output costs more than
// the arithmetic; these kernels read the NHWC input in place instead.
//
// With unit dilation, the taps of one filter row over all input channels are fW * C contiguous
// floats of the input (a "run"), so a pixel's patch is fH runs. The input is copied into a
// zero-padded buffer when the filter reaches past its border, so every run is in bounds.
//
//   forward          y[p, :] = sum_runs sum_j run(p)[j] * W[row, :]      outC in registers
//   filter gradient  dW^T[o, k] = sum_p dy[p, o] * patch(p)[k]           k in registers
// (isa_kernels.inl holds the register-blocked loops; simd.h their contracts.)
#include <algorithm>
#include <cstring>

#include "nn_internal.h"
#include "simd.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace detail {
namespace {

using G = Conv2DGeometry;

// Floats past the padded input that the filter-gradient kernel may read (3 vectors of 16).
constexpr int64_t kSlack = 64;

struct DirectInput {
  const float* data;
  int64_t hp, wp;
};

int64_t paddedHeight(const G& g) { return (g.outHeight - 1) * g.strideHeight + g.filterHeight; }
int64_t paddedWidth(const G& g) { return (g.outWidth - 1) * g.strideWidth + g.filterWidth; }

// x as a [batch, hp, wp, C] input in which every tap of every output pixel is in bounds: x itself
// when no padding is needed (and no slack is), else a zero-padded copy in the calling thread's
// scratch, with x at (padTop, padLeft).
DirectInput prepareInput(const G& g, const float* x, bool needSlack) {
  const int64_t hp = paddedHeight(g), wp = paddedWidth(g), C = g.inChannels;
  if (!needSlack && g.padTop == 0 && g.padLeft == 0 && hp <= g.inHeight && wp <= g.inWidth)
    return {x, g.inHeight, g.inWidth};
  const int64_t imageSize = hp * wp * C;
  float* buf = scratch(kScratchPadded, static_cast<size_t>(g.batch * imageSize + kSlack));
  // Columns of a padded row that hold image pixels.
  const int64_t c0 = std::min(wp, g.padLeft), c1 = std::min(wp, std::max(c0, g.padLeft + g.inWidth));
  auto images = [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n)
      for (int64_t ph = 0; ph < hp; ++ph) {
        float* row = buf + n * imageSize + ph * wp * C;
        const int64_t ih = ph - g.padTop;
        if (ih < 0 || ih >= g.inHeight) {
          std::memset(row, 0, sizeof(float) * wp * C);
          continue;
        }
        std::memset(row, 0, sizeof(float) * c0 * C);
        std::memcpy(row + c0 * C, x + ((n * g.inHeight + ih) * g.inWidth + (c0 - g.padLeft)) * C,
                    sizeof(float) * (c1 - c0) * C);
        std::memset(row + c1 * C, 0, sizeof(float) * (wp - c1) * C);
      }
  };
  if (g.batch * imageSize >= (int64_t(1) << 16)) parallelFor(g.batch, 1, images);
  else images(0, g.batch);
  std::memset(buf + g.batch * imageSize, 0, sizeof(float) * kSlack);
  return {buf, hp, wp};
}

// Offsets in the prepared input of output pixels [begin, begin + count).
void pixelBases(const G& g, const DirectInput& in, int64_t begin, int64_t count, int64_t* base) {
  const int64_t plane = g.outHeight * g.outWidth, C = g.inChannels;
  int64_t n = begin / plane, rem = begin - n * plane;
  int64_t oh = rem / g.outWidth, ow = rem - oh * g.outWidth;
  for (int64_t i = 0; i < count; ++i) {
    base[i] = ((n * in.hp + oh * g.strideHeight) * in.wp + ow * g.strideWidth) * C;
    if (++ow == g.outWidth) {
      ow = 0;
      if (++oh == g.outHeight) {
        oh = 0;
        ++n;
      }
    }
  }
}

std::vector<int64_t> runOffsets(const G& g, const DirectInput& in) {
  std::vector<int64_t> off(static_cast<size_t>(g.filterHeight));
  for (int64_t kh = 0; kh < g.filterHeight; ++kh) off[kh] = kh * in.wp * g.inChannels;
  return off;
}

bool unitDilationNonNegativePads(const G& g) {
  return g.dilationHeight == 1 && g.dilationWidth == 1 && g.padTop >= 0 && g.padLeft >= 0;
}

}  // namespace

bool directForwardFits(const G& g) {
  return unitDilationNonNegativePads(g) && g.outChannels <= 4 * kernels().nrNarrow;
}

bool directFilterGradFits(const G& g) {
  // Measured (bench/kernels.ts): ahead of the packed GEMM up to 64 channels on either side.
  return unitDilationNonNegativePads(g) && g.outChannels <= 64 && g.inChannels <= 64;
}

ConvForwardRows::ConvForwardRows(const G& g, const float* x, const float* filter, bool direct)
    : g_(g), x_(x), filter_(filter), direct_(direct) {
  if (!direct_) return;
  const DirectInput in = prepareInput(g, x, false);
  src_ = in.data;
  hp_ = in.hp;
  wp_ = in.wp;
  const int vec = kernels().nrNarrow;
  const int64_t N = g.outChannels, K = g.filterHeight * g.filterWidth * g.inChannels;
  ldw_ = (N + vec - 1) / vec * vec;
  if (ldw_ != N) {  // rows padded to whole vectors
    w_.assign(static_cast<size_t>(K * ldw_), 0.0f);
    for (int64_t k = 0; k < K; ++k) std::memcpy(w_.data() + k * ldw_, filter + k * N, sizeof(float) * N);
  }
  runOff_ = runOffsets(g, in);
  runLen_ = g.filterWidth * g.inChannels;
}

int64_t ConvForwardRows::maxPieces() const {
  const int64_t threads = numThreads();
  if (direct_) return 4 * threads;
  const int64_t rows = g_.batch * g_.outHeight * g_.outWidth;
  return std::max<int64_t>(threads, std::min<int64_t>(4 * threads, rows / 512));
}

void ConvForwardRows::operator()(int64_t begin, int64_t end, float* y) const {
  if (!direct_) {
    gemmForwardRows(g_, x_, filter_, begin, end, y);
    return;
  }
  thread_local std::vector<int64_t> base;
  base.resize(static_cast<size_t>(end - begin));
  pixelBases(g_, {src_, hp_, wp_}, begin, end - begin, base.data());
  const int64_t N = g_.outChannels;
  kernels().directConvRows(src_, base.data(), end - begin, g_.filterHeight, runOff_.data(), runLen_,
                           w_.empty() ? filter_ : w_.data(), ldw_, y + begin * N, N, static_cast<int>(N));
}

bool directStridedInputGradFits(const G& g) {
  return unitDilationNonNegativePads(g) && g.inChannels <= 4 * kernels().nrNarrow;
}

// The input gradient of a strided convolution by phases. An input pixel ih receives taps kh with
// kh = (ih + padTop) mod s (mod s): writing ih + padTop = s i + a, tap kh = a + s t reads dy row
// i - t. So the pixels of one phase (a, b) form a stride-1 convolution over dy with the taps
// (a + s t, b + s u), whose runs are u-adjacent dy pixels: the forward's direct kernel, with
// the phase's filter taps packed transposed ([t][q][outC][inC], q = U - 1 - u) and dx rows
// written every s pixels. dy is zero-padded so every run is in bounds.
void directStridedInputGradient(const G& g, const float* dy, const float* filter, float* dx) {
  const int64_t s = g.strideHeight, sw = g.strideWidth, Co = g.outChannels, Ci = g.inChannels;
  const int64_t tMax = (g.filterHeight + s - 1) / s, uMax = (g.filterWidth + sw - 1) / sw;
  // Phase coordinates i = (ih + padTop - a) / s reach up to this; dy holds rows [0, outH).
  const int64_t iMax = (g.inHeight - 1 + g.padTop) / s, jMax = (g.inWidth - 1 + g.padLeft) / sw;
  const int64_t PT = tMax - 1, PL = uMax - 1;
  const int64_t hp = PT + std::max(g.outHeight, iMax + 1), wp = PL + std::max(g.outWidth, jMax + 1);
  const int64_t imageSize = hp * wp * Co;
  float* pad = scratch(kScratchPadded, static_cast<size_t>(g.batch * imageSize));
  auto padImages = [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      float* img = pad + n * imageSize;
      std::memset(img, 0, sizeof(float) * imageSize);
      for (int64_t oh = 0; oh < g.outHeight; ++oh)
        std::memcpy(img + ((PT + oh) * wp + PL) * Co, dy + ((n * g.outHeight + oh) * g.outWidth) * Co,
                    sizeof(float) * g.outWidth * Co);
    }
  };
  if (g.batch * imageSize >= (int64_t(1) << 16)) parallelFor(g.batch, 1, padImages);
  else padImages(0, g.batch);

  struct Phase {
    int64_t a, b, T, U;
    std::vector<float> w;  // [T][U * Co][ldw]
  };
  const int vec = kernels().nrNarrow;
  const int64_t ldw = (Ci + vec - 1) / vec * vec;
  std::vector<Phase> phases;
  for (int64_t a = 0; a < s; ++a)
    for (int64_t b = 0; b < sw; ++b) {
      Phase p{a, b, a < g.filterHeight ? (g.filterHeight - a + s - 1) / s : 0,
              b < g.filterWidth ? (g.filterWidth - b + sw - 1) / sw : 0, {}};
      p.w.assign(static_cast<size_t>(std::max<int64_t>(1, p.T * p.U * Co * ldw)), 0.0f);
      for (int64_t t = 0; t < p.T; ++t)
        for (int64_t q = 0; q < p.U; ++q) {
          const int64_t kh = a + s * t, kw = b + sw * (p.U - 1 - q);
          for (int64_t co = 0; co < Co; ++co)
            for (int64_t ci = 0; ci < Ci; ++ci)
              p.w[((t * p.U + q) * Co + co) * ldw + ci] = filter[((kh * g.filterWidth + kw) * Ci + ci) * Co + co];
        }
      phases.push_back(std::move(p));
    }
  // Tasks: (image, input row); each writes every pixel of its dx row once.
  parallelFor(g.batch * g.inHeight, 1, [&](int64_t tb, int64_t te) {
    thread_local std::vector<int64_t> base;
    std::vector<int64_t> runOff;
    for (int64_t task = tb; task < te; ++task) {
      const int64_t n = task / g.inHeight, ih = task - n * g.inHeight;
      float* row = dx + (n * g.inHeight + ih) * g.inWidth * Ci;
      const int64_t a = (ih + g.padTop) % s, i = (ih + g.padTop - a) / s;
      for (const Phase& p : phases) {
        if (p.a != a) continue;
        // Input columns of this phase: iw = sw j + b - padLeft in [0, inW).
        const int64_t j0 = std::max<int64_t>(0, (g.padLeft - p.b + sw - 1) / sw);
        const int64_t j1 = (g.inWidth - 1 + g.padLeft - p.b) / sw;  // inclusive
        if (g.inWidth - 1 + g.padLeft - p.b < 0 || j1 < j0) continue;
        const int64_t count = j1 - j0 + 1, iw0 = sw * j0 + p.b - g.padLeft;
        float* out = row + iw0 * Ci;
        if (p.T == 0 || p.U == 0) {
          for (int64_t k = 0; k < count; ++k) std::memset(out + k * sw * Ci, 0, sizeof(float) * Ci);
          continue;
        }
        base.resize(static_cast<size_t>(count));
        for (int64_t k = 0; k < count; ++k)
          base[k] = n * imageSize + ((PT + i) * wp + PL + j0 + k - (p.U - 1)) * Co;
        runOff.resize(static_cast<size_t>(p.T));
        for (int64_t t = 0; t < p.T; ++t) runOff[t] = -t * wp * Co;
        kernels().directConvRows(pad, base.data(), count, p.T, runOff.data(), p.U * Co, p.w.data(), ldw, out, sw * Ci,
                                 static_cast<int>(Ci));
      }
    }
  });
}

void directFilterGradient(const G& g, const float* x, const float* dy, float* dw) {
  // The kernel reads whole vectors: past a run's end only when the run is not a whole number of
  // them (the 1- and 3-channel stems), and only then does an unpadded input need a copy.
  const bool ragged = (g.filterWidth * g.inChannels) % kernels().nrNarrow != 0;
  const DirectInput in = prepareInput(g, x, ragged);
  const std::vector<int64_t> runOff = runOffsets(g, in);
  const int64_t runLen = g.filterWidth * g.inChannels, K = g.filterHeight * runLen, N = g.outChannels;
  const int64_t M = g.batch * g.outHeight * g.outWidth;
  const int threads = g.flops() < 4e6 ? 1 : numThreads();
  float* partial = scratch(kScratchPartial, static_cast<size_t>(threads * N * K));
  std::memset(partial, 0, sizeof(float) * threads * N * K);
  // Chunks of pixels small enough that their dy rows and input runs stay in cache across the
  // kernel's passes (one per run and output-channel block).
  constexpr int64_t kChunk = 1024;
  auto range = [&](int t) {
    const int64_t p0 = M * t / threads, p1 = M * (t + 1) / threads;
    thread_local std::vector<int64_t> base, shifted;
    base.resize(kChunk);
    shifted.resize(kChunk);
    for (int64_t p = p0; p < p1; p += kChunk) {
      const int64_t count = std::min(kChunk, p1 - p);
      pixelBases(g, in, p, count, base.data());
      kernels().directFilterGrad(in.data, base.data(), count, g.filterHeight, runOff.data(), runLen, dy + p * N, N, N,
                                 partial + t * N * K, K, shifted.data());
    }
  };
  if (threads == 1) range(0);
  else parallelRegion(range);
  // dw[k, o] = sum over threads of partial[t][o, k].
  forEachRowPiece(K, 1, double(K * N * threads) * 8, [&](int64_t kb, int64_t ke) {
    for (int64_t k = kb; k < ke; ++k)
      for (int64_t o = 0; o < N; ++o) {
        float s = 0.0f;
        for (int t = 0; t < threads; ++t) s += partial[t * N * K + o * K + k];
        dw[k * N + o] = s;
      }
  });
}

}  // namespace detail
}  // namespace nn
}  // namespace supcon
