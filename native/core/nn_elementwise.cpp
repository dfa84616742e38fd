// Memory-bound kernels of a training step: broadcasting binary ops, unary ops, sum reductions,
// tiling and batch normalization. Each one reduces its shapes to a few coalesced dimensions and
// runs contiguous inner loops over them, split over the thread pool when large enough.
#include <algorithm>
#include <cmath>
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

constexpr int64_t kParallelElements = int64_t(1) << 15;  // below this, threads cost more than they save
constexpr int64_t kGrainElements = int64_t(1) << 14;


// Runs fn(begin, end) over [0, n) items of `itemSize` elements each, in parallel when large.
void forRange(int64_t n, int64_t itemSize, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n * itemSize < kParallelElements || numThreads() == 1) {
    fn(0, n);
    return;
  }
  parallelFor(n, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, itemSize)), fn);
}

// ---- binary ---------------------------------------------------------------------------------

// Dimensions of the output (size-1 axes dropped, contiguous runs merged) with each operand's
// element strides (0 along broadcast axes).
struct BroadcastPlan {
  int rank = 0;
  int64_t dims[kMaxRank];
  int64_t sa[kMaxRank], sb[kMaxRank];
};

BroadcastPlan planBroadcast(const Shape& a, const Shape& b, const Shape& out) {
  const int R = out.rank;
  int64_t ad[kMaxRank], bd[kMaxRank], as[kMaxRank], bs[kMaxRank];
  for (int i = 0; i < R; ++i) {
    const int ia = i - (R - a.rank), ib = i - (R - b.rank);
    ad[i] = ia >= 0 ? a.dims[ia] : 1;
    bd[i] = ib >= 0 ? b.dims[ib] : 1;
  }
  int64_t sA = 1, sB = 1;
  for (int i = R - 1; i >= 0; --i) {
    as[i] = ad[i] == 1 ? 0 : sA;
    bs[i] = bd[i] == 1 ? 0 : sB;
    sA *= ad[i];
    sB *= bd[i];
  }
  BroadcastPlan p;
  for (int i = 0; i < R; ++i) {
    if (out.dims[i] == 1) continue;
    if (p.rank > 0) {
      const int j = p.rank - 1;  // merge axis i into the previous kept axis when contiguous
      if (p.sa[j] == as[i] * out.dims[i] && p.sb[j] == bs[i] * out.dims[i]) {
        p.dims[j] *= out.dims[i];
        p.sa[j] = as[i];
        p.sb[j] = bs[i];
        continue;
      }
    }
    p.dims[p.rank] = out.dims[i];
    p.sa[p.rank] = as[i];
    p.sb[p.rank] = bs[i];
    ++p.rank;
  }
  if (p.rank == 0) {
    p.rank = 1;
    p.dims[0] = 1;
    p.sa[0] = p.sb[0] = 0;
  }
  return p;
}

struct AddF { static float f(float a, float b) { return a + b; } };
struct SubF { static float f(float a, float b) { return a - b; } };
struct MulF { static float f(float a, float b) { return a * b; } };
struct DivF { static float f(float a, float b) { return a / b; } };
struct SqDiffF { static float f(float a, float b) { const float d = a - b; return d * d; } };
// NaN-propagating like Math.max / Math.min.
struct MaxF { static float f(float a, float b) { return (a != a || b != b) ? NAN : (a > b ? a : b); } };
struct MinF { static float f(float a, float b) { return (a != a || b != b) ? NAN : (a < b ? a : b); } };

template <typename Op>
void binaryRun(const BroadcastPlan& p, const float* a, const float* b, float* out) {
  const int last = p.rank - 1;
  const int64_t inner = p.dims[last];
  const int64_t ia = p.sa[last], ib = p.sb[last];
  int64_t outer = 1;
  for (int i = 0; i < last; ++i) outer *= p.dims[i];
  forRange(outer, inner, [&](int64_t begin, int64_t end) {
    int64_t idx[kMaxRank] = {};
    int64_t oa = 0, ob = 0, rem = begin;
    for (int i = last - 1; i >= 0; --i) {
      idx[i] = rem % p.dims[i];
      rem /= p.dims[i];
      oa += idx[i] * p.sa[i];
      ob += idx[i] * p.sb[i];
    }
    for (int64_t o = begin; o < end; ++o) {
      const float* pa = a + oa;
      const float* pb = b + ob;
      float* po = out + o * inner;
      if (ia == 1 && ib == 1) {
        for (int64_t j = 0; j < inner; ++j) po[j] = Op::f(pa[j], pb[j]);
      } else if (ia == 1) {
        const float bv = pb[0];
        for (int64_t j = 0; j < inner; ++j) po[j] = Op::f(pa[j], bv);
      } else if (ib == 1) {
        const float av = pa[0];
        for (int64_t j = 0; j < inner; ++j) po[j] = Op::f(av, pb[j]);
      } else {
        const float v = Op::f(pa[0], pb[0]);
        for (int64_t j = 0; j < inner; ++j) po[j] = v;
      }
      for (int i = last - 1; i >= 0; --i) {  // odometer over the outer axes
        oa += p.sa[i];
        ob += p.sb[i];
        if (++idx[i] < p.dims[i]) break;
        oa -= p.sa[i] * p.dims[i];
        ob -= p.sb[i] * p.dims[i];
        idx[i] = 0;
      }
    }
  });
}

// ---- unary ----------------------------------------------------------------------------------

template <UnaryOp U>
inline float unaryF(float x, float alpha) {
  switch (U) {
    case UnaryOp::kRelu: return x < 0.0f ? 0.0f : x;  // NaN passes through, as Math.max(0, x)
    case UnaryOp::kRelu6: return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case UnaryOp::kStep: return x != x ? x : (x > 0.0f ? 1.0f : alpha);
    case UnaryOp::kSquare: return x * x;
    case UnaryOp::kNeg: return -x;
    case UnaryOp::kAbs: return std::fabs(x);
    case UnaryOp::kSqrt: return std::sqrt(x);
    case UnaryOp::kRsqrt: return 1.0f / std::sqrt(x);
  }
  return x;
}

template <UnaryOp U>
void unaryRun(int64_t n, const float* x, float alpha, float* out) {
  forRange(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = unaryF<U>(x[i], alpha);
  });
}

}  // namespace

Status validate(const Shape& s) {
  if (s.rank < 0 || s.rank > kMaxRank)
    return Status::invalid("expected a rank in [0, " + std::to_string(kMaxRank) + "] but got " + std::to_string(s.rank));
  for (int i = 0; i < s.rank; ++i)
    if (s.dims[i] < 0) return Status::invalid("expected non-negative sizes but got " + std::to_string(s.dims[i]));
  int64_t p = 1;
  for (int i = 0; i < s.rank; ++i) {
    if (s.dims[i] == 0) return Status::ok();
    if (!detail::productFits({p, s.dims[i]})) return Status::invalid("a tensor has 2^31 or more elements");
    p *= s.dims[i];
  }
  return Status::ok();
}

Status broadcastShape(const Shape& a, const Shape& b, Shape* out) {
  SUPCON_RETURN_IF_ERROR(validate(a));
  SUPCON_RETURN_IF_ERROR(validate(b));
  const int R = std::max(a.rank, b.rank);
  Shape o;
  o.rank = R;
  for (int i = 0; i < R; ++i) {
    const int ia = i - (R - a.rank), ib = i - (R - b.rank);
    const int64_t da = ia >= 0 ? a.dims[ia] : 1, db = ib >= 0 ? b.dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return Status::invalid("shapes do not broadcast: size " + std::to_string(da) + " vs " + std::to_string(db) +
                             " at axis " + std::to_string(i));
    o.dims[i] = da == 1 ? db : da;
  }
  SUPCON_RETURN_IF_ERROR(validate(o));
  *out = o;
  return Status::ok();
}

Status binary(BinaryOp op, const Shape& aShape, const float* a, const Shape& bShape, const float* b, float* out) {
  Shape o;
  SUPCON_RETURN_IF_ERROR(broadcastShape(aShape, bShape, &o));
  if (o.size() == 0) return Status::ok();
  if (!a || !b || !out) return Status::invalid("binary: null tensor pointer");
  const BroadcastPlan p = planBroadcast(aShape, bShape, o);
  return guarded("binary", [&] {
    switch (op) {
      case BinaryOp::kAdd: return binaryRun<AddF>(p, a, b, out);
      case BinaryOp::kSub: return binaryRun<SubF>(p, a, b, out);
      case BinaryOp::kMul: return binaryRun<MulF>(p, a, b, out);
      case BinaryOp::kDiv: return binaryRun<DivF>(p, a, b, out);
      case BinaryOp::kSquaredDifference: return binaryRun<SqDiffF>(p, a, b, out);
      case BinaryOp::kMaximum: return binaryRun<MaxF>(p, a, b, out);
      case BinaryOp::kMinimum: return binaryRun<MinF>(p, a, b, out);
    }
  });
}

Status unary(UnaryOp op, int64_t n, const float* x, float alpha, float* out) {
  if (n < 0 || !detail::productFits({n})) return Status::invalid("unary: expected a size in [0, 2^31)");
  if (n == 0) return Status::ok();
  if (!x || !out) return Status::invalid("unary: null tensor pointer");
  return guarded("unary", [&] {
    switch (op) {
      case UnaryOp::kRelu: return unaryRun<UnaryOp::kRelu>(n, x, alpha, out);
      case UnaryOp::kRelu6: return unaryRun<UnaryOp::kRelu6>(n, x, alpha, out);
      case UnaryOp::kStep: return unaryRun<UnaryOp::kStep>(n, x, alpha, out);
      case UnaryOp::kSquare: return unaryRun<UnaryOp::kSquare>(n, x, alpha, out);
      case UnaryOp::kNeg: return unaryRun<UnaryOp::kNeg>(n, x, alpha, out);
      case UnaryOp::kAbs: return unaryRun<UnaryOp::kAbs>(n, x, alpha, out);
      case UnaryOp::kSqrt: return unaryRun<UnaryOp::kSqrt>(n, x, alpha, out);
      case UnaryOp::kRsqrt: return unaryRun<UnaryOp::kRsqrt>(n, x, alpha, out);
    }
  });
}

// ---- reduceSum --------------------------------------------------------------------------------

Status reduceSum(const Shape& xShape, const bool* reduce, const float* x, double scale, float* out) {
  SUPCON_RETURN_IF_ERROR(validate(xShape));
  if (!reduce && xShape.rank > 0) return Status::invalid("reduceSum: null axis flags");
  int64_t outSize = 1;
  for (int i = 0; i < xShape.rank; ++i)
    if (!reduce[i]) outSize *= xShape.dims[i];
  const int64_t n = xShape.size();
  if (outSize == 0) return Status::ok();
  if (!out || (n > 0 && !x)) return Status::invalid("reduceSum: null tensor pointer");
  if (n == 0) {
    std::fill(out, out + outSize, 0.0f);
    return Status::ok();
  }
  // Coalesce: drop size-1 axes, merge neighbours with the same flag.
  int rank = 0;
  int64_t dims[kMaxRank];
  bool red[kMaxRank];
  for (int i = 0; i < xShape.rank; ++i) {
    if (xShape.dims[i] == 1) continue;
    if (rank > 0 && red[rank - 1] == reduce[i]) {
      dims[rank - 1] *= xShape.dims[i];
    } else {
      dims[rank] = xShape.dims[i];
      red[rank] = reduce[i];
      ++rank;
    }
  }
  if (rank == 0) {  // a single element
    out[0] = static_cast<float>(double(x[0]) * scale);
    return Status::ok();
  }
  // Output strides of the kept axes (0 for reduced ones).
  int64_t os[kMaxRank];
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    os[i] = red[i] ? 0 : stride;
    if (!red[i]) stride *= dims[i];
  }
  const int last = rank - 1;
  const int64_t inner = dims[last];
  const bool innerReduced = red[last];
  // Accumulates input runs of outer positions [begin, end) into acc.
  auto accumulate = [&](int64_t begin, int64_t end, double* acc) {
    int64_t idx[kMaxRank] = {};
    int64_t oo = 0, rem = begin;
    for (int i = last - 1; i >= 0; --i) {
      idx[i] = rem % dims[i];
      rem /= dims[i];
      oo += idx[i] * os[i];
    }
    for (int64_t o = begin; o < end; ++o) {
      const float* px = x + o * inner;
      if (innerReduced) {
        double s = 0;
        for (int64_t j = 0; j < inner; ++j) s += px[j];
        acc[oo] += s;
      } else {
        double* pa = acc + oo;
        for (int64_t j = 0; j < inner; ++j) pa[j] += px[j];
      }
      for (int i = last - 1; i >= 0; --i) {
        oo += os[i];
        if (++idx[i] < dims[i]) break;
        oo -= os[i] * dims[i];
        idx[i] = 0;
      }
    }
  };
  int64_t outer = n / inner;
  return guarded("reduceSum", [&] {
    const int threads = numThreads();
    Buffer<double> acc(static_cast<size_t>(outSize), true);
    if (n < kParallelElements || threads == 1 || outer == 1) {
      accumulate(0, outer, acc.data());
    } else if (!red[0]) {
      // The outermost axis is kept: split it, so threads write disjoint outputs.
      const int64_t perItem = outer / dims[0];
      forRange(dims[0], n / dims[0], [&](int64_t b, int64_t e) { accumulate(b * perItem, e * perItem, acc.data()); });
    } else {
      // The outermost axis is reduced: one accumulator per piece, summed at the end.
      const int64_t pieces = std::min<int64_t>(threads, outer);
      Buffer<double> partial(static_cast<size_t>(pieces * outSize), true);
      const int64_t per = (outer + pieces - 1) / pieces;
      parallelFor(pieces, 1, [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p)
          accumulate(p * per, std::min(outer, (p + 1) * per), partial.data() + p * outSize);
      });
      for (int64_t p = 0; p < pieces; ++p)
        for (int64_t i = 0; i < outSize; ++i) acc[i] += partial[p * outSize + i];
    }
    for (int64_t i = 0; i < outSize; ++i) out[i] = static_cast<float>(acc[i] * scale);
  });
}

// ---- tile -------------------------------------------------------------------------------------

Status tile(const Shape& xShape, const int64_t* reps, const float* x, float* out) {
  SUPCON_RETURN_IF_ERROR(validate(xShape));
  if (!reps && xShape.rank > 0) return Status::invalid("tile: null reps");
  Shape o = xShape;
  for (int i = 0; i < xShape.rank; ++i) {
    if (reps[i] < 0) return Status::invalid("tile: expected reps >= 0 but got " + std::to_string(reps[i]));
    if (xShape.dims[i] != 0 && reps[i] > ((int64_t(1) << 31) - 1) / xShape.dims[i])
      return Status::invalid("tile: the output has 2^31 or more elements");
    o.dims[i] = xShape.dims[i] * reps[i];
  }
  SUPCON_RETURN_IF_ERROR(validate(o));
  const int64_t n = o.size();
  if (n == 0) return Status::ok();
  if (!x || !out) return Status::invalid("tile: null tensor pointer");
  if (xShape.rank == 0) {
    out[0] = x[0];
    return Status::ok();
  }
  const int last = xShape.rank - 1;
  const int64_t inInner = xShape.dims[last], outInner = o.dims[last];
  int64_t xs[kMaxRank];
  int64_t stride = 1;
  for (int i = last; i >= 0; --i) {
    xs[i] = stride;
    stride *= xShape.dims[i];
  }
  const int64_t outer = n / outInner;
  return guarded("tile", [&] {
    forRange(outer, outInner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        int64_t rem = r, src = 0;
        for (int i = last - 1; i >= 0; --i) {
          src += (rem % o.dims[i]) % xShape.dims[i] * xs[i];
          rem /= o.dims[i];
        }
        float* dst = out + r * outInner;
        for (int64_t k = 0; k < reps[last]; ++k) std::copy(x + src, x + src + inInner, dst + k * inInner);
      }
    });
  });
}

// ---- batchNorm --------------------------------------------------------------------------------

Status batchNorm(const BatchNormArgs& a, float* y) {
  auto bad = [](const std::string& m) { return Status::invalid("batchNorm: " + m); };
  if (a.size < 0 || !detail::productFits({a.size})) return bad("expected a size in [0, 2^31)");
  if (a.meanSize < 1 || a.varianceSize < 1 || (a.offset && a.offsetSize < 1) || (a.scale && a.scaleSize < 1))
    return bad("expected non-empty mean, variance, offset and scale");
  if (a.size == 0) return Status::ok();
  if (!a.x || !a.mean || !a.variance || !y) return bad("null tensor pointer");
  const int64_t offLen = a.offset ? a.offsetSize : 1, scaleLen = a.scale ? a.scaleSize : 1;
  const int64_t L = std::max({a.meanSize, a.varianceSize, offLen, scaleLen});
  auto fits = [L](int64_t len) { return len == 1 || len == L; };
  const double eps = a.epsilon;
  return guarded("batchNorm", [&] {
    if (fits(a.meanSize) && fits(a.varianceSize) && fits(offLen) && fits(scaleLen) && a.size % L == 0) {
      // Every parameter repeats with period L: y = (x - m) * inv + off per position of a row.
      Buffer<float> m(static_cast<size_t>(L)), inv(static_cast<size_t>(L)), off(static_cast<size_t>(L));
      for (int64_t j = 0; j < L; ++j) {
        const double s = a.scale ? a.scale[a.scaleSize == 1 ? 0 : j] : 1.0;
        const double v = a.variance[a.varianceSize == 1 ? 0 : j];
        m[j] = a.mean[a.meanSize == 1 ? 0 : j];
        inv[j] = static_cast<float>(s / std::sqrt(v + eps));
        off[j] = a.offset ? a.offset[a.offsetSize == 1 ? 0 : j] : 0.0f;
      }
      forRange(a.size / L, L, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const float* px = a.x + r * L;
          float* py = y + r * L;
          for (int64_t j = 0; j < L; ++j) py[j] = (px[j] - m[j]) * inv[j] + off[j];
        }
      });
      return;
    }
    // Unrelated periods: tfjs's modular indexing, element by element.
    for (int64_t i = 0; i < a.size; ++i) {
      const double s = a.scale ? a.scale[i % a.scaleSize] : 1.0;
      const double o = a.offset ? a.offset[i % a.offsetSize] : 0.0;
      y[i] = static_cast<float>(o + (double(a.x[i]) - a.mean[i % a.meanSize]) * s /
                                        std::sqrt(double(a.variance[i % a.varianceSize]) + eps));
    }
  });
}

}  // namespace nn
}  // namespace supcon
