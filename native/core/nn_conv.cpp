// 2-D convolution (NHWC) as the project's one GEMM over operands that pack image patches
// directly into micro-panels (implicit im2col: the patch matrix is never materialized).
//
//   forward          Y [pixels, Cout]  = P(x) [pixels, K] * W [K, Cout]          K = fH fW Cin
//   filter gradient  dW [K, Cout]      = P(x)^T [K, pixels] * dY [pixels, Cout]
//                    (pixels split over threads, partial products summed)
//   input gradient   stride 1: a forward convolution of dY with the flipped, transposed filter
//                    (its patches are packed from dY the same way);
//                    any stride: dcol = dY W^T by the GEMM, then scatter-added into dx (col2im).
// P(img)[m, k] is the patch matrix: row m = (n, oh, ow), column k = (kh, kw, c).
#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "guarded.h"
#include "memory.h"
#include "nn_internal.h"
#include "supcon/gemm.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace {

constexpr int kMaxMr = 32;

// The geometry with pads that may be negative (the direct input gradient shifts by them).
using G = Conv2DGeometry;

int64_t patchRows(const G& g) { return g.batch * g.outHeight * g.outWidth; }
int64_t patchCols(const G& g) { return g.filterHeight * g.filterWidth * g.inChannels; }

// Walks output pixels m = (n*outH + oh)*outW + ow in order, tracking the image origin of each.
struct PixelCursor {
  const G& g;
  int64_t n, oh, ow;
  PixelCursor(const G& geom, int64_t m) : g(geom) {
    const int64_t plane = g.outHeight * g.outWidth;
    n = m / plane;
    const int64_t rem = m - n * plane;
    oh = rem / g.outWidth;
    ow = rem - oh * g.outWidth;
  }
  int64_t ih0() const { return oh * g.strideHeight - g.padTop; }
  int64_t iw0() const { return ow * g.strideWidth - g.padLeft; }
  void next() {
    if (++ow == g.outWidth) {
      ow = 0;
      if (++oh == g.outHeight) {
        oh = 0;
        ++n;
      }
    }
  }
};

// A = P(image) rows [rowBase, ...): packs mr-row micro-panels, transposing patch segments.
class PatchRowsA final : public GemmOperandA {
 public:
  PatchRowsA(const G& g, const float* image, int64_t rowBase) : g_(g), img_(image), rowBase_(rowBase) {}

  void pack(float* dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr) const override {
    const int64_t M = patchRows(g_), C = g_.inChannels;
    const int64_t H = g_.inHeight, W = g_.inWidth;
    const float* base[kMaxMr];
    int64_t ih0[kMaxMr], iw0[kMaxMr];
    for (int64_t ip = 0; ip < mc; ip += mr) {
      const int64_t m0 = rowBase_ + i0 + ip;
      const int rows = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>({mr, mc - ip, M - m0})));
      if (rows > 0) {
        PixelCursor cur(g_, m0);
        for (int r = 0; r < rows; ++r, cur.next()) {
          base[r] = img_ + cur.n * H * W * C;
          ih0[r] = cur.ih0();
          iw0[r] = cur.iw0();
        }
      }
      int64_t tap = k0 / C, c = k0 - tap * C;
      for (int64_t k = k0; k < k0 + kc; ++tap, c = 0) {
        const int64_t len = std::min(C - c, k0 + kc - k);
        const int64_t kh = tap / g_.filterWidth, kw = tap - kh * g_.filterWidth;
        float* d = dst + (k - k0) * mr;
        for (int r = 0; r < rows; ++r) {
          const int64_t ih = ih0[r] + kh * g_.dilationHeight, iw = iw0[r] + kw * g_.dilationWidth;
          if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            const float* s = base[r] + (ih * W + iw) * C + c;
            for (int64_t j = 0; j < len; ++j) d[j * mr + r] = s[j];
          } else {
            for (int64_t j = 0; j < len; ++j) d[j * mr + r] = 0.0f;
          }
        }
        for (int r = rows; r < mr; ++r)
          for (int64_t j = 0; j < len; ++j) d[j * mr + r] = 0.0f;
        k += len;
      }
      dst += static_cast<int64_t>(mr) * kc;
    }
  }

 private:
  const G& g_;
  const float* img_;
  int64_t rowBase_;
};

// A = P(image)^T: rows are patch columns k, the depth is pixels [rowBase, ...). Each packed
// depth step is mr consecutive patch columns of one pixel: contiguous runs of the NHWC image.
class PatchColsA final : public GemmOperandA {
 public:
  PatchColsA(const G& g, const float* image, int64_t rowBase) : g_(g), img_(image), rowBase_(rowBase) {}

  void pack(float* dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr) const override {
    const int64_t K = patchCols(g_), C = g_.inChannels;
    const int64_t H = g_.inHeight, W = g_.inWidth;
    struct Segment { int64_t at, len, dh, dw, c; };
    Segment seg[kMaxMr + 1];
    for (int64_t ip = 0; ip < mc; ip += mr) {
      const int64_t row0 = i0 + ip;
      const int64_t rows = std::max<int64_t>(0, std::min<int64_t>({mr, mc - ip, K - row0}));
      // The panel's rows as runs of channels within one filter tap.
      int segments = 0;
      for (int64_t done = 0, tap = row0 / C, c = row0 - tap * C; done < rows; ++tap, c = 0) {
        const int64_t len = std::min(C - c, rows - done);
        const int64_t kh = tap / g_.filterWidth, kw = tap - kh * g_.filterWidth;
        seg[segments++] = {done, len, kh * g_.dilationHeight, kw * g_.dilationWidth, c};
        done += len;
      }
      PixelCursor cur(g_, rowBase_ + k0);
      for (int64_t p = 0; p < kc; ++p, cur.next()) {
        float* d = dst + p * mr;
        const float* img = img_ + cur.n * H * W * C;
        const int64_t ih0 = cur.ih0(), iw0 = cur.iw0();
        for (int sIdx = 0; sIdx < segments; ++sIdx) {
          const Segment& sg = seg[sIdx];
          const int64_t ih = ih0 + sg.dh, iw = iw0 + sg.dw;
          float* o = d + sg.at;
          if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            const float* src = img + (ih * W + iw) * C + sg.c;
            for (int64_t j = 0; j < sg.len; ++j) o[j] = src[j];
          } else {
            for (int64_t j = 0; j < sg.len; ++j) o[j] = 0.0f;
          }
        }
        for (int64_t j = rows; j < mr; ++j) d[j] = 0.0f;
      }
      dst += static_cast<int64_t>(mr) * kc;
    }
  }

 private:
  const G& g_;
  const float* img_;
  int64_t rowBase_;
};

// dst[c * rows + r] = src[r * cols + c] in cache-sized tiles (filters reach several MB), bands
// of rows split over the thread pool.
void transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  constexpr int64_t kT = 32;
  auto band = [&](int64_t tb, int64_t te) {
    for (int64_t r0 = tb * kT; r0 < std::min(rows, te * kT); r0 += kT)
      for (int64_t c0 = 0; c0 < cols; c0 += kT) {
        const int64_t r1 = std::min(rows, r0 + kT), c1 = std::min(cols, c0 + kT);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
      }
  };
  const int64_t bands = (rows + kT - 1) / kT;
  if (rows * cols >= (int64_t(1) << 16)) parallelFor(bands, 1, band);
  else band(0, bands);
}

// y = epilogue(P(x) W), pieces of output rows in parallel. g may have negative pads.
void forwardImpl(const G& g, const float* x, const float* filter, const Epilogue& e, float* y, bool direct) {
  const int64_t M = patchRows(g), N = g.outChannels;
  const detail::ConvForwardRows rows(g, x, filter, direct);
  detail::forEachRowPiece(
      M, gemmBlocking().mr, g.flops(),
      [&](int64_t begin, int64_t end) {
        rows(begin, end, y);
        if (e.active()) detail::epilogueRows(e, end - begin, N, y + begin * N, N);
      },
      rows.maxPieces());
}

// The stride-1 input gradient's geometry: a forward convolution of dy into dx.
G flippedGeometry(const G& g) {
  G t;
  t.batch = g.batch;
  t.inHeight = g.outHeight;
  t.inWidth = g.outWidth;
  t.inChannels = g.outChannels;
  t.outHeight = g.inHeight;
  t.outWidth = g.inWidth;
  t.outChannels = g.inChannels;
  t.filterHeight = g.filterHeight;
  t.filterWidth = g.filterWidth;
  t.dilationHeight = g.dilationHeight;
  t.dilationWidth = g.dilationWidth;
  t.padTop = (g.filterHeight - 1) * g.dilationHeight - g.padTop;
  t.padLeft = (g.filterWidth - 1) * g.dilationWidth - g.padLeft;
  return t;
}

// Stride-1 input gradient as a forward convolution over dy (see the file comment).
void backpropInputDirect(const G& g, const float* dy, const float* filter, float* dx) {
  const int64_t fh = g.filterHeight, fw = g.filterWidth, ci = g.inChannels, co = g.outChannels;
  // flipped[kh', kw', co, ci] = filter[fh-1-kh', fw-1-kw', ci, co]
  float* flipped = detail::scratch(detail::kScratchFilter, static_cast<size_t>(g.filterSize()));
  auto flipTaps = [&](int64_t b, int64_t e) {  // taps in parallel; transpose() then runs inline
    for (int64_t tap = b; tap < e; ++tap) {
      const int64_t kh = tap / fw, kw = tap - kh * fw;
      transpose(filter + ((fh - 1 - kh) * fw + (fw - 1 - kw)) * ci * co, ci, co, flipped + tap * co * ci);
    }
  };
  if (g.filterSize() >= (int64_t(1) << 16)) parallelFor(fh * fw, 1, flipTaps);
  else flipTaps(0, fh * fw);
  const G t = flippedGeometry(g);
  forwardImpl(t, dy, flipped, Epilogue{}, dx, detail::directForwardFits(t));
}

// dx += scatter of dcol rows [row0, row0 + rows) (global pixel rows (n, oh, ow)) into their taps.
void col2im(const G& g, const float* dcol, int64_t row0, int64_t rows, float* dx) {
  const int64_t C = g.inChannels, K = patchCols(g);
  PixelCursor cur(g, row0);
  for (int64_t r = 0; r < rows; ++r, cur.next()) {
    const float* src = dcol + r * K;
    float* image = dx + cur.n * g.inHeight * g.inWidth * C;
    for (int64_t kh = 0; kh < g.filterHeight; ++kh) {
      const int64_t ih = cur.ih0() + kh * g.dilationHeight;
      if (ih < 0 || ih >= g.inHeight) continue;
      for (int64_t kw = 0; kw < g.filterWidth; ++kw) {
        const int64_t iw = cur.iw0() + kw * g.dilationWidth;
        if (iw < 0 || iw >= g.inWidth) continue;
        float* d = image + (ih * g.inWidth + iw) * C;
        const float* s = src + (kh * g.filterWidth + kw) * C;
        for (int64_t c = 0; c < C; ++c) d[c] += s[c];
      }
    }
  }
}

// dcol = dY W^T by the GEMM in chunks of rows that may span images, each scattered into dx.
// Threads take whole images, so no two scatter into the same pixels.
void backpropInputCol2Im(const G& g, const float* dy, const float* filter, float* dx) {
  const int64_t K = patchCols(g), N = g.outChannels;
  const int64_t plane = g.outHeight * g.outWidth;
  const int64_t imageSize = g.inHeight * g.inWidth * g.inChannels;
  // filterT [Cout, K] so the GEMM's B operand packs contiguous rows.
  float* filterT = detail::scratch(detail::kScratchFilter, static_cast<size_t>(K * N));
  transpose(filter, K, N, filterT);
  const StridedB wt(filterT, N, K, K, 1);
  // ~2 MB of dcol per chunk: enough rows that packing W^T is amortized, small enough for cache.
  const int mr = gemmBlocking().mr;
  const int64_t chunk = std::max<int64_t>(8 * mr, (int64_t(1) << 19) / std::max<int64_t>(1, K));
  const int threads = numThreads();
  auto images = [&](int64_t n0, int64_t n1, bool parallelGemm) {
    std::memset(dx + n0 * imageSize, 0, sizeof(float) * (n1 - n0) * imageSize);
    const int64_t r1 = n1 * plane;
    float* dcol = detail::scratch(detail::kScratchColumns, static_cast<size_t>(std::min(chunk, r1 - n0 * plane) * K));
    for (int64_t r = n0 * plane; r < r1; r += chunk) {
      const int64_t rows = std::min(chunk, r1 - r);
      const StridedA a(dy + r * N, rows, N, N, 1);
      if (parallelGemm) gemmParallel(rows, K, N, 1.0f, a, wt, 0.0f, dcol, K);
      else gemm(rows, K, N, 1.0f, a, wt, 0.0f, dcol, K);
      col2im(g, dcol, r, rows, dx);
    }
  };
  if (g.batch >= threads && threads > 1 && g.flops() >= 4e6) {
    const int64_t tasks = std::min<int64_t>(g.batch, 4 * threads);
    const int64_t per = (g.batch + tasks - 1) / tasks;
    parallelFor(tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t n0 = std::min(g.batch, t * per), n1 = std::min(g.batch, n0 + per);
        if (n1 > n0) images(n0, n1, false);
      }
    });
  } else {
    images(0, g.batch, true);
  }
}

// dW [K, Cout] = P(x)^T dY: pixels split into one range per thread, each range's product
// computed by the GEMM (the first into dw, the others into scratch), then summed.
void backpropFilterImpl(const G& g, const float* x, const float* dy, float* dw, bool direct) {
  if (direct) {
    detail::directFilterGradient(g, x, dy, dw);
    return;
  }
  const int64_t M = patchRows(g), K = patchCols(g), N = g.outChannels;
  const int threads = numThreads();
  // Enough pixels per range that the GEMM's depth blocks are full, and partial buffers that
  // stay a small fraction of memory.
  const int64_t partialBytes = K * N * int64_t(sizeof(float));
  int64_t ranges = std::min<int64_t>(threads, std::max<int64_t>(1, M / 512));
  ranges = std::min<int64_t>(ranges, std::max<int64_t>(1, (int64_t(256) << 20) / std::max<int64_t>(1, partialBytes)));
  if (g.flops() < 4e6) ranges = 1;
  if (ranges == 1) {
    const PatchColsA a(g, x, 0);
    const StridedB b(dy, M, N, N, 1);
    gemmParallel(K, N, M, 1.0f, a, b, 0.0f, dw, N);
    return;
  }
  float* partial = detail::scratch(detail::kScratchPartial, static_cast<size_t>((ranges - 1) * K * N));
  const int64_t per = (M + ranges - 1) / ranges;
  parallelFor(ranges, 1, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      const int64_t p0 = std::min(M, r * per), p1 = std::min(M, p0 + per);
      float* out = r == 0 ? dw : partial + (r - 1) * K * N;
      const PatchColsA a(g, x, p0);
      const StridedB b(dy + p0 * N, p1 - p0, N, N, 1);
      gemm(K, N, p1 - p0, 1.0f, a, b, 0.0f, out, N);  // p1 == p0 writes zeros
    }
  });
  detail::forEachRowPiece(K * N, 1, double(K * N * ranges) * 64, [&](int64_t b, int64_t e) {
    for (int64_t r = 1; r < ranges; ++r) {
      const float* src = partial + (r - 1) * K * N;
      for (int64_t i = b; i < e; ++i) dw[i] += src[i];
    }
  });
}


}  // namespace

namespace detail {
void gemmForwardRows(const Conv2DGeometry& g, const float* x, const float* filter, int64_t begin, int64_t end,
                     float* y) {
  const int64_t K = patchCols(g), N = g.outChannels;
  const StridedB w(filter, K, N, N, 1);
  const PatchRowsA a(g, x, begin);
  gemm(end - begin, N, K, 1.0f, a, w, 0.0f, y + begin * N, N);
}
}  // namespace detail

Status validate(const Conv2DGeometry& g) {
  auto bad = [](const std::string& m) { return Status::invalid("conv2d: " + m); };
  const int64_t kMaxDim = (int64_t(1) << 31) - 1;
  struct Field { const char* name; int64_t value; int64_t min; };
  const Field fields[] = {
      {"batch", g.batch, 1},           {"inHeight", g.inHeight, 1},         {"inWidth", g.inWidth, 1},
      {"inChannels", g.inChannels, 1}, {"outHeight", g.outHeight, 1},       {"outWidth", g.outWidth, 1},
      {"outChannels", g.outChannels, 1}, {"filterHeight", g.filterHeight, 1}, {"filterWidth", g.filterWidth, 1},
      {"strideHeight", g.strideHeight, 1}, {"strideWidth", g.strideWidth, 1},
      {"dilationHeight", g.dilationHeight, 1}, {"dilationWidth", g.dilationWidth, 1},
      {"padTop", g.padTop, 0},         {"padLeft", g.padLeft, 0},
  };
  for (const Field& f : fields) {
    if (f.value < f.min || f.value > kMaxDim)
      return bad(std::string("expected ") + f.name + " in [" + std::to_string(f.min) + ", 2^31) but got " +
                 std::to_string(f.value));
  }
  if (!detail::productFits({g.batch, g.inHeight, g.inWidth, g.inChannels}))
    return bad("the input has 2^31 or more elements");
  if (!detail::productFits({g.batch, g.outHeight, g.outWidth, g.outChannels}))
    return bad("the output has 2^31 or more elements");
  if (!detail::productFits({g.filterHeight, g.filterWidth, g.inChannels, g.outChannels}))
    return bad("the filter has 2^31 or more elements");
  // Index arithmetic (oh * stride + kh * dilation) stays far from overflow.
  if (!detail::productFits({g.outHeight, g.strideHeight}) || !detail::productFits({g.outWidth, g.strideWidth}) ||
      !detail::productFits({g.filterHeight, g.dilationHeight}) || !detail::productFits({g.filterWidth, g.dilationWidth}) ||
      !detail::productFits({g.batch, g.outHeight, g.outWidth, g.filterHeight, g.filterWidth}) ||
      g.padTop > kMaxDim / 2 || g.padLeft > kMaxDim / 2)
    return bad("strides, dilations or paddings are out of range");
  return Status::ok();
}

namespace {
// Whether to run the direct kernel: kAuto's choice, or an explicit one (false and an error
// Status when kDirect does not fit).
Status chooseDirect(ConvAlgorithm algorithm, bool fits, const char* fn, bool* direct) {
  *direct = algorithm == ConvAlgorithm::kDirect || (algorithm == ConvAlgorithm::kAuto && fits);
  if (*direct && !fits)
    return Status::invalid(std::string("Expected a geometry the direct kernel takes (unit dilation, few channels) for ") +
                           fn + " algorithm kDirect but received one it does not");
  return Status::ok();
}
}  // namespace

Status conv2dForward(const Conv2DGeometry& g, const float* x, const float* filter, const Epilogue& epilogue,
                     float* y, ConvAlgorithm algorithm) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!x || !filter || !y) return Status::invalid("conv2dForward: null tensor pointer");
  bool direct = false;
  SUPCON_RETURN_IF_ERROR(chooseDirect(algorithm, detail::directForwardFits(g), "conv2dForward", &direct));
  return guarded("conv2dForward", [&] { forwardImpl(g, x, filter, epilogue, y, direct); });
}

Status conv2dBackpropInput(const Conv2DGeometry& g, const float* dy, const float* filter, float* dx,
                           BackpropInputAlgorithm algorithm) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!dy || !filter || !dx) return Status::invalid("conv2dBackpropInput: null tensor pointer");
  const bool unitStride = g.strideHeight == 1 && g.strideWidth == 1;
  const bool phasesFit = !unitStride && detail::directStridedInputGradFits(g);
  if (algorithm == BackpropInputAlgorithm::kDirect && !unitStride && !phasesFit)
    return Status::invalid(
        "Expected stride 1, or a strided geometry the direct kernel takes (unit dilation, few input channels), for "
        "conv2dBackpropInput algorithm kDirect but received one it does not");
  // Measured (bench/kernels.ts): col2im is faster than the flipped convolution through the
  // GEMM up to ~128 input channels (that GEMM is then only inChannels wide); the flipped form
  // wins from ~256, where col2im's W^T panels (K = fH fW inC wide) are repacked for every chunk
  // of rows, and for narrow layers whose flipped convolution runs the direct kernel. Strided
  // narrow layers take the direct kernel phase by phase.
  const bool direct = algorithm == BackpropInputAlgorithm::kDirect ||
                      (algorithm == BackpropInputAlgorithm::kAuto &&
                       (phasesFit || (unitStride && (g.inChannels >= 192 ||
                                                     detail::directForwardFits(flippedGeometry(g))))));
  return guarded("conv2dBackpropInput", [&] {
    if (direct && unitStride) backpropInputDirect(g, dy, filter, dx);
    else if (direct) detail::directStridedInputGradient(g, dy, filter, dx);
    else backpropInputCol2Im(g, dy, filter, dx);
  });
}

Status conv2dBackpropFilter(const Conv2DGeometry& g, const float* x, const float* dy, float* dfilter,
                            ConvAlgorithm algorithm) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!x || !dy || !dfilter) return Status::invalid("conv2dBackpropFilter: null tensor pointer");
  bool direct = false;
  SUPCON_RETURN_IF_ERROR(chooseDirect(algorithm, detail::directFilterGradFits(g), "conv2dBackpropFilter", &direct));
  return guarded("conv2dBackpropFilter", [&] { backpropFilterImpl(g, x, dy, dfilter, direct); });
}

}  // namespace nn
}  // namespace supcon
