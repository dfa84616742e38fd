// Bindings of the nn kernels (supcon/nn.h) for the native tfjs CPU kernels (src/kernels).
// Synchronous: tfjs kernels run on the JS thread. Inputs are read in place from the caller's
// Float32Arrays (tfjs's own storage) and the output array, allocated by the caller, is written.
#include <napi.h>

#include <cmath>
#include <limits>

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

// conv2dForward({x, filter, bias?, y, ...geometry, activation, leakyReluAlpha})
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const Conv2DGeometry g = readGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  const float* filter = floatArray(o, "filter", g.filterSize());
  float* y = floatArray(o, "y", g.outputSize());
  const Epilogue e = readEpilogue(o, g.outChannels);
  supcon::Status st = supcon::nn::conv2dForward(g, x, filter, e, y);
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

// conv2dBackpropFilter({x, dy, dfilter, ...geometry})
Napi::Value Conv2dBackpropFilter(const Napi::CallbackInfo& info) {
  Napi::Object o = argsObject(info);
  const Conv2DGeometry g = readGeometry(o);
  const float* x = floatArray(o, "x", g.inputSize());
  const float* dy = floatArray(o, "dy", g.outputSize());
  float* dfilter = floatArray(o, "dfilter", g.filterSize());
  supcon::Status st = supcon::nn::conv2dBackpropFilter(g, x, dy, dfilter);
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

}  // namespace

void registerNn(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, Conv2dForward, "conv2dForward"));
  exports.Set("conv2dBackpropInput", Napi::Function::New(env, Conv2dBackpropInput, "conv2dBackpropInput"));
  exports.Set("conv2dBackpropFilter", Napi::Function::New(env, Conv2dBackpropFilter, "conv2dBackpropFilter"));
  exports.Set("batchMatMul", Napi::Function::New(env, BatchMatMul, "batchMatMul"));
}

}  // namespace supcon_napi
