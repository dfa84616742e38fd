// Bindings of the nn kernels (supcon/nn.h) for the native tfjs CPU kernels (src/kernels).
// Synchronous: tfjs kernels run on the JS thread. Inputs are read in place from the caller's
// Float32Arrays (tfjs's own storage); the output array, supplied by the caller, is written in
// full (its old contents are never read).
#include <napi.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "args.h"
#include "supcon/nn.h"

namespace supcon_napi {
namespace {

using supcon::nn::Activation;
using supcon::nn::Conv2DGeometry;
using supcon::nn::Epilogue;
using supcon::nn::MatMulShape;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

Napi::Object argsObject(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) typeError(info.Env(), "expected an arguments object");
  return info[0].As<Napi::Object>();
}

Conv2DGeometry readGeometry(const Napi::Object& o) {
  Conv2DGeometry g;
  g.batch = intField(o, "batch", 1, kMaxInt32);
  g.inHeight = intField(o, "inHeight", 1, kMaxInt32);
  g.inWidth = intField(o, "inWidth", 1, kMaxInt32);
  g.inChannels = intField(o, "inChannels", 1, kMaxInt32);
  g.outHeight = intField(o, "outHeight", 1, kMaxInt32);
  g.outWidth = intField(o, "outWidth", 1, kMaxInt32);
  g.outChannels = intField(o, "outChannels", 1, kMaxInt32);
  g.filterHeight = intField(o, "filterHeight", 1, kMaxInt32);
  g.filterWidth = intField(o, "filterWidth", 1, kMaxInt32);
  g.strideHeight = intField(o, "strideHeight", 1, kMaxInt32);
  g.strideWidth = intField(o, "strideWidth", 1, kMaxInt32);
  g.dilationHeight = intField(o, "dilationHeight", 1, kMaxInt32);
  g.dilationWidth = intField(o, "dilationWidth", 1, kMaxInt32);
  g.padTop = intField(o, "padTop", 0, kMaxInt32);
  g.padLeft = intField(o, "padLeft", 0, kMaxInt32);
  // Sizes are checked (products below 2^31) before any array length is computed from them.
  supcon::Status st = supcon::nn::validate(g);
  if (!st.isOk()) throwStatus(o.Env(), st);
  return g;
}

Epilogue readEpilogue(const Napi::Object& o, int64_t channels) {
  Epilogue e;
  e.bias = floatArray(o, "bias", channels, true);
  e.activation = static_cast<Activation>(intField(o, "activation", 0, 5));
  const double alpha = numberField(o, "leakyReluAlpha");
  if (!std::isfinite(alpha)) typeError(o.Env(), "expected a finite number for leakyReluAlpha");
  e.leakyReluAlpha = static_cast<float>(alpha);
  return e;
}

// The optional `algorithm` of conv2dForward / conv2dBackpropFilter: 0 auto (absent), 1 GEMM,
// 2 direct (supcon::nn::ConvAlgorithm's explicit numbers).
supcon::nn::ConvAlgorithm readConvAlgorithm(const Napi::Object& o) {
  Napi::Value v = o.Get("algorithm");
  if (v.IsUndefined()) return supcon::nn::ConvAlgorithm::kAuto;
  return static_cast<supcon::nn::ConvAlgorithm>(intField(o, "algorithm", 0, 2));
}

// conv2dForward({x, filter, bias?, y, ...geometry, activation, leakyReluAlpha, algorithm?})
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const Conv2DGeometry g = readGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  const float* filter = floatArray(o, "filter", g.filterSize());
  float* y = floatArray(o, "y", g.outputSize());
  const Epilogue e = readEpilogue(o, g.outChannels);
  supcon::Status st = supcon::nn::conv2dForward(g, x, filter, e, y, readConvAlgorithm(o));
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// conv2dBackpropInput({dy, filter, dx, ...geometry, algorithm})
Napi::Value Conv2dBackpropInput(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const Conv2DGeometry g = readGeometry(o);
  const float* dy = floatArray(o, "dy", g.outputSize());
  const float* filter = floatArray(o, "filter", g.filterSize());
  float* dx = floatArray(o, "dx", g.inputSize());
  const auto algorithm = static_cast<supcon::nn::BackpropInputAlgorithm>(intField(o, "algorithm", 0, 2));
  supcon::Status st = supcon::nn::conv2dBackpropInput(g, dy, filter, dx, algorithm);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// conv2dBackpropFilter({x, dy, dfilter, ...geometry, algorithm?})
Napi::Value Conv2dBackpropFilter(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const Conv2DGeometry g = readGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  const float* dy = floatArray(o, "dy", g.outputSize());
  float* dfilter = floatArray(o, "dfilter", g.filterSize());
  supcon::Status st = supcon::nn::conv2dBackpropFilter(g, x, dy, dfilter, readConvAlgorithm(o));
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// batchMatMul({a, b, bias?, c, batchA, batchB, m, n, k, transposeA, transposeB, activation,
// leakyReluAlpha})
Napi::Value BatchMatMul(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  MatMulShape s;
  s.batchA = intField(o, "batchA", 1, kMaxInt32);
  s.batchB = intField(o, "batchB", 1, kMaxInt32);
  s.m = intField(o, "m", 0, kMaxInt32);
  s.n = intField(o, "n", 0, kMaxInt32);
  s.k = intField(o, "k", 0, kMaxInt32);
  s.transposeA = boolField(o, "transposeA");
  s.transposeB = boolField(o, "transposeB");
  supcon::Status st = supcon::nn::validate(s);
  if (!st.isOk()) throwStatus(info.Env(), st);
  const float* a = floatArray(o, "a", s.batchA * s.m * s.k);
  const float* b = floatArray(o, "b", s.batchB * s.k * s.n);
  float* c = floatArray(o, "c", s.batch() * s.m * s.n);
  const Epilogue e = readEpilogue(o, s.n);
  st = supcon::nn::batchMatMul(s, a, b, e, c);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// A shape: an array of at most kMaxRank integer sizes in [0, 2^31).
supcon::nn::Shape shapeField(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsArray()) typeError(o.Env(), std::string("expected an array of sizes for ") + name);
  Napi::Array arr = v.As<Napi::Array>();
  if (arr.Length() > static_cast<uint32_t>(supcon::nn::kMaxRank))
    typeError(o.Env(), std::string("expected at most ") + std::to_string(supcon::nn::kMaxRank) + " sizes for " + name);
  supcon::nn::Shape s;
  s.rank = static_cast<int>(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(x >= 0 && x <= double(kMaxInt32)) || x != std::floor(x))
      typeError(o.Env(), std::string("expected integer sizes in [0, 2^31) for ") + name);
    s.dims[i] = static_cast<int64_t>(x);
  }
  supcon::Status st = supcon::nn::validate(s);
  if (!st.isOk()) throwStatus(o.Env(), st);
  return s;
}

// Length of a typed-array argument (its type is checked when it is read).
int64_t typedArrayLength(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsTypedArray()) typeError(o.Env(), std::string("expected a Float32Array for ") + name);
  return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength());
}

// binaryOp({op, a, aShape, b, bShape, out}): out has the broadcast shape.
Napi::Value BinaryOp(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const auto op = static_cast<supcon::nn::BinaryOp>(intField(o, "op", 0, 6));
  const supcon::nn::Shape as = shapeField(o, "aShape"), bs = shapeField(o, "bShape");
  supcon::nn::Shape out;
  supcon::Status st = supcon::nn::broadcastShape(as, bs, &out);
  if (!st.isOk()) throwStatus(info.Env(), st);
  const float* a = floatArray(o, "a", as.size());
  const float* b = floatArray(o, "b", bs.size());
  float* c = floatArray(o, "out", out.size());
  st = supcon::nn::binary(op, as, a, bs, b, c);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// unaryOp({op, x, alpha, out})
Napi::Value UnaryOp(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const auto op = static_cast<supcon::nn::UnaryOp>(intField(o, "op", 0, 7));
  const int64_t n = typedArrayLength(o, "x");
  const float* x = floatArray(o, "x", n);
  float* out = floatArray(o, "out", n);
  const double alpha = numberField(o, "alpha");
  supcon::Status st = supcon::nn::unary(op, n, x, static_cast<float>(alpha), out);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// reduceSum({x, shape, axes, scale, out}): out = scale * sum over axes (kept axes in order).
Napi::Value ReduceSum(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const supcon::nn::Shape s = shapeField(o, "shape");
  Napi::Value axesValue = o.Get("axes");
  if (!axesValue.IsArray()) typeError(info.Env(), "expected an array of axes for axes");
  Napi::Array axes = axesValue.As<Napi::Array>();
  bool reduce[supcon::nn::kMaxRank] = {};
  for (uint32_t i = 0; i < axes.Length(); ++i) {
    Napi::Value a = axes.Get(i);
    const double d = a.IsNumber() ? a.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= 0 && d < s.rank) || d != std::floor(d)) typeError(info.Env(), "expected axes in [0, rank)");
    reduce[static_cast<int>(d)] = true;
  }
  int64_t outSize = 1;
  for (int i = 0; i < s.rank; ++i)
    if (!reduce[i]) outSize *= s.dims[i];
  const float* x = floatArray(o, "x", s.size());
  float* out = floatArray(o, "out", outSize);
  const double scale = numberField(o, "scale");
  supcon::Status st = supcon::nn::reduceSum(s, reduce, x, scale, out);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// tile({x, shape, reps, out})
Napi::Value Tile(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const supcon::nn::Shape s = shapeField(o, "shape");
  const supcon::nn::Shape reps = shapeField(o, "reps");
  if (reps.rank != s.rank) typeError(info.Env(), "expected one rep per axis for reps");
  supcon::nn::Shape out = s;
  for (int i = 0; i < s.rank; ++i) {
    if (s.dims[i] != 0 && reps.dims[i] > kMaxInt32 / s.dims[i]) typeError(info.Env(), "expected a tile output below 2^31 elements");
    out.dims[i] = s.dims[i] * reps.dims[i];
  }
  supcon::Status st = supcon::nn::validate(out);
  if (!st.isOk()) throwStatus(info.Env(), st);
  const float* x = floatArray(o, "x", s.size());
  float* y = floatArray(o, "out", out.size());
  st = supcon::nn::tile(s, reps.dims, x, y);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// A non-empty Float32Array argument of any length (null when optional and absent).
const float* anyFloatArray(const Napi::Object& o, const char* name, bool optional, int64_t* length) {
  Napi::Value v = o.Get(name);
  *length = 0;
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  *length = typedArrayLength(o, name);
  if (*length == 0) typeError(o.Env(), std::string("expected a non-empty Float32Array for ") + name);
  return floatArray(o, name, *length);
}

// batchNorm({x, mean, variance, offset?, scale?, epsilon, y})
Napi::Value BatchNorm(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  supcon::nn::BatchNormArgs a;
  a.size = typedArrayLength(o, "x");
  a.x = floatArray(o, "x", a.size);
  a.mean = anyFloatArray(o, "mean", false, &a.meanSize);
  a.variance = anyFloatArray(o, "variance", false, &a.varianceSize);
  a.offset = anyFloatArray(o, "offset", true, &a.offsetSize);
  a.scale = anyFloatArray(o, "scale", true, &a.scaleSize);
  const double eps = numberField(o, "epsilon");
  if (!std::isfinite(eps) || eps < 0) typeError(info.Env(), "expected a finite epsilon >= 0");
  a.epsilon = static_cast<float>(eps);
  float* y = floatArray(o, "y", a.size);
  supcon::Status st = supcon::nn::batchNorm(a, y);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

supcon::nn::Pool2DGeometry readPoolGeometry(const Napi::Object& o) {
  supcon::nn::Pool2DGeometry g;
  g.batch = intField(o, "batch", 1, kMaxInt32);
  g.inHeight = intField(o, "inHeight", 1, kMaxInt32);
  g.inWidth = intField(o, "inWidth", 1, kMaxInt32);
  g.channels = intField(o, "channels", 1, kMaxInt32);
  g.outHeight = intField(o, "outHeight", 1, kMaxInt32);
  g.outWidth = intField(o, "outWidth", 1, kMaxInt32);
  g.filterHeight = intField(o, "filterHeight", 1, kMaxInt32);
  g.filterWidth = intField(o, "filterWidth", 1, kMaxInt32);
  g.strideHeight = intField(o, "strideHeight", 1, kMaxInt32);
  g.strideWidth = intField(o, "strideWidth", 1, kMaxInt32);
  g.padTop = intField(o, "padTop", 0, kMaxInt32);
  g.padLeft = intField(o, "padLeft", 0, kMaxInt32);
  supcon::Status st = supcon::nn::validate(g);
  if (!st.isOk()) throwStatus(o.Env(), st);
  return g;
}

// pool2d({type: 0 max | 1 avg, x, y, ...poolGeometry})
Napi::Value Pool2d(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const auto type = static_cast<supcon::nn::PoolType>(intField(o, "type", 0, 1));
  const supcon::nn::Pool2DGeometry g = readPoolGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  float* y = floatArray(o, "y", g.outputSize());
  supcon::Status st = supcon::nn::pool2d(type, g, x, y);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// maxPool2dBackward({x, dy, dx, ...poolGeometry})
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const supcon::nn::Pool2DGeometry g = readPoolGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  const float* dy = floatArray(o, "dy", g.outputSize());
  float* dx = floatArray(o, "dx", g.inputSize());
  supcon::Status st = supcon::nn::maxPool2dBackward(g, x, dy, dx);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// avgPool2dBackward({dy, dx, ...poolGeometry})
Napi::Value AvgPool2dBackward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const supcon::nn::Pool2DGeometry g = readPoolGeometry(o);
  const float* dy = floatArray(o, "dy", g.outputSize());
  float* dx = floatArray(o, "dx", g.inputSize());
  supcon::Status st = supcon::nn::avgPool2dBackward(g, dy, dx);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// convBatchNormForward({...geometry, x, filter, gamma, beta, movingMean, movingVariance,
// residual?, relu, training, epsilon, momentum, y, z?, mean?, variance?, newMovingMean?,
// newMovingVariance?}); see supcon/nn.h.
Napi::Value ConvBatchNormForward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  supcon::nn::ConvBatchNormForwardArgs a;
  a.conv = readGeometry(o);
  const int64_t c = a.conv.outChannels, out = a.conv.outputSize();
  a.x = floatArray(o, "x", a.conv.inputSize());
  a.filter = floatArray(o, "filter", a.conv.filterSize());
  a.gamma = floatArray(o, "gamma", c);
  a.beta = floatArray(o, "beta", c);
  a.movingMean = floatArray(o, "movingMean", c);
  a.movingVariance = floatArray(o, "movingVariance", c);
  a.residual = floatArray(o, "residual", out, true);
  a.relu = boolField(o, "relu");
  a.training = boolField(o, "training");
  a.epsilon = static_cast<float>(numberField(o, "epsilon"));
  a.momentum = static_cast<float>(numberField(o, "momentum"));
  a.y = floatArray(o, "y", out);
  a.z = floatArray(o, "z", out, true);
  a.mean = floatArray(o, "mean", c, true);
  a.variance = floatArray(o, "variance", c, true);
  a.newMovingMean = floatArray(o, "newMovingMean", c, true);
  a.newMovingVariance = floatArray(o, "newMovingVariance", c, true);
  // Optional: the count output (a Float64Array of 1) and synchronized batch norm over MPI.
  a.count = typedArrayField<double>(o, "count", napi_float64_array, 1, true);
  if (optionalBool(o, "syncBatchNorm")) a.reduceMoments = mpiMomentReducer();
  supcon::Status st = supcon::nn::convBatchNormForward(a);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// convBatchNormBackward({...geometry, x?, filter?, gamma, z, y?, mean, variance, dy, relu,
// training, epsilon, dx?, dfilter?, dgamma, dbeta, dresidual?, dz?}); see supcon/nn.h.
Napi::Value ConvBatchNormBackward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  supcon::nn::ConvBatchNormBackwardArgs a;
  a.conv = readGeometry(o);
  const int64_t c = a.conv.outChannels, out = a.conv.outputSize();
  a.x = floatArray(o, "x", a.conv.inputSize(), true);
  a.filter = floatArray(o, "filter", a.conv.filterSize(), true);
  a.gamma = floatArray(o, "gamma", c);
  a.z = floatArray(o, "z", out);
  a.y = floatArray(o, "y", out, true);
  a.mean = floatArray(o, "mean", c);
  a.variance = floatArray(o, "variance", c);
  a.dy = floatArray(o, "dy", out);
  a.relu = boolField(o, "relu");
  a.training = boolField(o, "training");
  a.epsilon = static_cast<float>(numberField(o, "epsilon"));
  a.dx = floatArray(o, "dx", a.conv.inputSize(), true);
  a.dfilter = floatArray(o, "dfilter", a.conv.filterSize(), true);
  a.dgamma = floatArray(o, "dgamma", c);
  a.dbeta = floatArray(o, "dbeta", c);
  a.dresidual = floatArray(o, "dresidual", out, true);
  a.dz = floatArray(o, "dz", out, true);
  // Optional: the forward's count and synchronized batch norm over MPI.
  Napi::Value count = o.Get("count");
  if (!count.IsUndefined()) a.count = numberField(o, "count");
  if (optionalBool(o, "syncBatchNorm")) a.reduceSums = mpiSumReducer();
  supcon::Status st = supcon::nn::convBatchNormBackward(a);
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// optimizerUpdate({kind: 'sgd' | 'lars', learningRate, momentum, weightDecay, nesterov,
// trustCoefficient, variables: [{value, grad, buffer?, newValue, newBuffer, decay}]}); see
// supcon/nn.h. The kind crosses by name.
Napi::Value OptimizerUpdate(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  supcon::nn::OptimizerStep step;
  Napi::Value kind = o.Get("kind");
  const std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : std::string();
  if (k == "sgd") step.kind = supcon::nn::OptimizerKind::kSgd;
  else if (k == "lars") step.kind = supcon::nn::OptimizerKind::kLars;
  else typeError(info.Env(), "expected 'sgd' or 'lars' for kind");
  step.learningRate = static_cast<float>(numberField(o, "learningRate"));
  step.momentum = static_cast<float>(numberField(o, "momentum"));
  step.weightDecay = static_cast<float>(numberField(o, "weightDecay"));
  step.nesterov = boolField(o, "nesterov");
  step.trustCoefficient = static_cast<float>(numberField(o, "trustCoefficient"));
  Napi::Value list = o.Get("variables");
  if (!list.IsArray()) typeError(info.Env(), "expected an array for variables");
  Napi::Array arr = list.As<Napi::Array>();
  std::vector<supcon::nn::OptimizerVariable> vars(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value item = arr.Get(i);
    if (!item.IsObject()) typeError(info.Env(), "expected objects in variables");
    Napi::Object v = item.As<Napi::Object>();
    const int64_t n = typedArrayLength(v, "value");
    vars[i].size = n;
    vars[i].value = floatArray(v, "value", n);
    vars[i].grad = floatArray(v, "grad", n);
    vars[i].buffer = floatArray(v, "buffer", n, true);
    vars[i].newValue = floatArray(v, "newValue", n);
    vars[i].newBuffer = floatArray(v, "newBuffer", n);
    vars[i].decay = boolField(v, "decay");
  }
  supcon::Status st = supcon::nn::optimizerUpdate(step, vars.data(), static_cast<int64_t>(vars.size()));
  if (!st.isOk()) throwStatus(info.Env(), st);
  return info.Env().Undefined();
}

// releaseNnScratch(): frees the convolutions' cached per-thread scratch buffers.
Napi::Value ReleaseNnScratch(const Napi::CallbackInfo& info) {
  supcon::nn::releaseScratchMemory();
  return info.Env().Undefined();
}

}  // namespace

void registerNn(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, Conv2dForward, "conv2dForward"));
  exports.Set("conv2dBackpropInput", Napi::Function::New(env, Conv2dBackpropInput, "conv2dBackpropInput"));
  exports.Set("conv2dBackpropFilter", Napi::Function::New(env, Conv2dBackpropFilter, "conv2dBackpropFilter"));
  exports.Set("batchMatMul", Napi::Function::New(env, BatchMatMul, "batchMatMul"));
  exports.Set("binaryOp", Napi::Function::New(env, BinaryOp, "binaryOp"));
  exports.Set("unaryOp", Napi::Function::New(env, UnaryOp, "unaryOp"));
  exports.Set("reduceSum", Napi::Function::New(env, ReduceSum, "reduceSum"));
  exports.Set("tile", Napi::Function::New(env, Tile, "tile"));
  exports.Set("batchNorm", Napi::Function::New(env, BatchNorm, "batchNorm"));
  exports.Set("pool2d", Napi::Function::New(env, Pool2d, "pool2d"));
  exports.Set("maxPool2dBackward", Napi::Function::New(env, MaxPool2dBackward, "maxPool2dBackward"));
  exports.Set("avgPool2dBackward", Napi::Function::New(env, AvgPool2dBackward, "avgPool2dBackward"));
  exports.Set("convBatchNormForward", Napi::Function::New(env, ConvBatchNormForward, "convBatchNormForward"));
  exports.Set("convBatchNormBackward", Napi::Function::New(env, ConvBatchNormBackward, "convBatchNormBackward"));
  exports.Set("optimizerUpdate", Napi::Function::New(env, OptimizerUpdate, "optimizerUpdate"));
  exports.Set("releaseNnScratch", Napi::Function::New(env, ReleaseNnScratch, "releaseNnScratch"));
}

}  // namespace supcon_napi
