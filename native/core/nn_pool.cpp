// 2-D max / average pooling and their gradients (NHWC): every loop runs over the contiguous
// channels of one pixel, images split over the thread pool (gradients scatter within an image
// only, so threads never write the same pixel).
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <string>

#include "guarded.h"
#include "memory.h"
#include "nn_internal.h"
#include "supcon/nn.h"
#include "supcon/thread_pool.h"

namespace supcon {
namespace nn {
namespace {

using PG = Pool2DGeometry;


// Runs fn(n) for every image, in parallel when the work is large enough.
void forEachImage(const PG& g, int64_t workPerImage, const std::function<void(int64_t)>& fn) {
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) fn(n);
  };
  if (numThreads() == 1 || g.batch == 1 || g.batch * workPerImage < (int64_t(1) << 16)) run(0, g.batch);
  else parallelFor(g.batch, 1, run);
}

// The window of output pixel (oh, ow) clipped to the image: rows [r0, r1), cols [c0, c1).
struct Window {
  int64_t r0, r1, c0, c1;
};
Window windowOf(const PG& g, int64_t oh, int64_t ow) {
  const int64_t top = oh * g.strideHeight - g.padTop, left = ow * g.strideWidth - g.padLeft;
  return {std::max<int64_t>(0, top), std::min(g.inHeight, top + g.filterHeight), std::max<int64_t>(0, left),
          std::min(g.inWidth, left + g.filterWidth)};
}

}  // namespace

Status validate(const Pool2DGeometry& g) {
  auto bad = [](const std::string& m) { return Status::invalid("pool2d: " + m); };
  const int64_t kMax = (int64_t(1) << 31) - 1;
  const int64_t positive[] = {g.batch, g.inHeight, g.inWidth, g.channels, g.outHeight, g.outWidth,
                              g.filterHeight, g.filterWidth, g.strideHeight, g.strideWidth};
  for (int64_t v : positive)
    if (v < 1 || v > kMax) return bad("expected sizes, filter and strides in [1, 2^31)");
  if (g.padTop < 0 || g.padLeft < 0 || g.padTop > kMax / 2 || g.padLeft > kMax / 2)
    return bad("expected paddings in [0, 2^30)");
  if (!detail::productFits({g.batch, g.inHeight, g.inWidth, g.channels}) ||
      !detail::productFits({g.batch, g.outHeight, g.outWidth, g.channels}) ||
      !detail::productFits({g.outHeight, g.strideHeight}) || !detail::productFits({g.outWidth, g.strideWidth}))
    return bad("a tensor has 2^31 or more elements");
  return Status::ok();
}

Status pool2d(PoolType type, const Pool2DGeometry& g, const float* x, float* y) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!x || !y) return Status::invalid("pool2d: null tensor pointer");
  const int64_t C = g.channels;
  return guarded("pool2d", [&] {
    forEachImage(g, g.outHeight * g.outWidth * g.filterHeight * g.filterWidth * C, [&](int64_t n) {
      const float* img = x + n * g.inHeight * g.inWidth * C;
      Buffer<double> sum(type == PoolType::kAvg ? static_cast<size_t>(C) : 0);
      for (int64_t oh = 0; oh < g.outHeight; ++oh)
        for (int64_t ow = 0; ow < g.outWidth; ++ow) {
          float* out = y + ((n * g.outHeight + oh) * g.outWidth + ow) * C;
          const Window w = windowOf(g, oh, ow);
          if (type == PoolType::kMax) {
            std::fill(out, out + C, -std::numeric_limits<float>::infinity());
            for (int64_t r = w.r0; r < w.r1; ++r)
              for (int64_t c = w.c0; c < w.c1; ++c) {
                const float* px = img + (r * g.inWidth + c) * C;
                for (int64_t k = 0; k < C; ++k) out[k] = px[k] > out[k] ? px[k] : out[k];  // NaN never wins
              }
          } else {
            std::fill(sum.data(), sum.data() + C, 0.0);
            for (int64_t r = w.r0; r < w.r1; ++r)
              for (int64_t c = w.c0; c < w.c1; ++c) {
                const float* px = img + (r * g.inWidth + c) * C;
                for (int64_t k = 0; k < C; ++k) sum[k] += px[k];
              }
            const double count = double(std::max<int64_t>(0, w.r1 - w.r0) * std::max<int64_t>(0, w.c1 - w.c0));
            for (int64_t k = 0; k < C; ++k) out[k] = static_cast<float>(sum[k] / count);  // 0/0: NaN, as tfjs
          }
        }
    });
  });
}

Status maxPool2dBackward(const Pool2DGeometry& g, const float* x, const float* dy, float* dx) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!x || !dy || !dx) return Status::invalid("maxPool2dBackward: null tensor pointer");
  const int64_t C = g.channels;
  return guarded("maxPool2dBackward", [&] {
    forEachImage(g, g.outHeight * g.outWidth * g.filterHeight * g.filterWidth * C, [&](int64_t n) {
      const int64_t imageSize = g.inHeight * g.inWidth * C;
      const float* img = x + n * imageSize;
      float* dimg = dx + n * imageSize;
      std::fill(dimg, dimg + imageSize, 0.0f);
      Buffer<float> best(static_cast<size_t>(C));
      Buffer<int64_t> where(static_cast<size_t>(C));
      for (int64_t oh = 0; oh < g.outHeight; ++oh)
        for (int64_t ow = 0; ow < g.outWidth; ++ow) {
          const float* grad = dy + ((n * g.outHeight + oh) * g.outWidth + ow) * C;
          const Window w = windowOf(g, oh, ow);
          std::fill(best.data(), best.data() + C, -std::numeric_limits<float>::infinity());
          std::fill(where.data(), where.data() + C, int64_t(-1));
          for (int64_t r = w.r0; r < w.r1; ++r)
            for (int64_t c = w.c0; c < w.c1; ++c) {
              const int64_t offset = (r * g.inWidth + c) * C;
              const float* px = img + offset;
              for (int64_t k = 0; k < C; ++k)
                if (px[k] > best[k]) {  // the first strict maximum, as tfjs's maxPoolPositions
                  best[k] = px[k];
                  where[k] = offset + k;
                }
            }
          for (int64_t k = 0; k < C; ++k)
            if (where[k] >= 0) dimg[where[k]] += grad[k];
        }
    });
  });
}

Status avgPool2dBackward(const Pool2DGeometry& g, const float* dy, float* dx) {
  SUPCON_RETURN_IF_ERROR(validate(g));
  if (!dy || !dx) return Status::invalid("avgPool2dBackward: null tensor pointer");
  const int64_t C = g.channels;
  const float scale = 1.0f / float(g.filterHeight * g.filterWidth);
  return guarded("avgPool2dBackward", [&] {
    forEachImage(g, g.outHeight * g.outWidth * g.filterHeight * g.filterWidth * C, [&](int64_t n) {
      const int64_t imageSize = g.inHeight * g.inWidth * C;
      float* dimg = dx + n * imageSize;
      std::fill(dimg, dimg + imageSize, 0.0f);
      for (int64_t oh = 0; oh < g.outHeight; ++oh)
        for (int64_t ow = 0; ow < g.outWidth; ++ow) {
          const float* grad = dy + ((n * g.outHeight + oh) * g.outWidth + ow) * C;
          const Window w = windowOf(g, oh, ow);
          for (int64_t r = w.r0; r < w.r1; ++r)
            for (int64_t c = w.c0; c < w.c1; ++c) {
              float* d = dimg + (r * g.inWidth + c) * C;
              for (int64_t k = 0; k < C; ++k) d[k] += grad[k] * scale;
            }
        }
    });
  });
}

}  // namespace nn
}  // namespace supcon
