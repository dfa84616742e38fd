// Entry of the N-API addon: capability report, thread control, memory counters, and the
// registration of the loss and kernel bindings. Thin glue: the math lives in native/core.
#include <napi.h>

#include "../core/memory.h"
#include "args.h"
#include "supcon/device.h"
#include "supcon/gemm.h"
#include "supcon/thread_pool.h"

#ifndef SUPCON_VERSION
#define SUPCON_VERSION "0.0.0"
#endif

namespace supcon_napi {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("version", SUPCON_VERSION);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("threads", supcon::numThreads());
  cpu.Set("simd", supcon::simdName());
  out.Set("cpu", cpu);
  const supcon::CudaInfo& ci = supcon::cudaInfo();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", ci.compiled);
  Napi::Array devices = Napi::Array::New(env, ci.devices.size());
  for (size_t i = 0; i < ci.devices.size(); ++i) {
    const auto& d = ci.devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", d.index);
    o.Set("name", d.name);
    o.Set("computeCapability", std::to_string(d.computeMajor) + "." + std::to_string(d.computeMinor));
    o.Set("totalMemoryBytes", static_cast<double>(d.totalMemoryBytes));
    o.Set("multiprocessors", d.multiprocessors);
    devices.Set(static_cast<uint32_t>(i), o);
  }
  cuda.Set("devices", devices);
  if (!ci.reason.empty()) cuda.Set("reason", ci.reason);
  if (!ci.runtimeVersion.empty()) cuda.Set("runtimeVersion", ci.runtimeVersion);
  cuda.Set("autoMinRows", static_cast<double>(supcon::cudaAutoMinRows()));
  out.Set("cuda", cuda);
  return out;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) typeError(env, "expected an integer thread count");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= 256) || n != static_cast<int>(n)) typeError(env, "expected a thread count in [1, 256]");
  supcon::setNumThreads(static_cast<int>(n));
  return env.Undefined();
}

// Bytes held by the core's buffers: tests check it returns to its baseline (no native leaks).
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("currentBytes", static_cast<double>(supcon::memory::currentBytes()));
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  registerLoss(env, exports);
  registerNn(env, exports);
  registerMpi(env, exports);
  return exports;
}

}  // namespace supcon_napi

static Napi::Object InitSupconNative(Napi::Env env, Napi::Object exports) { return supcon_napi::Init(env, exports); }

NODE_API_MODULE(supcon_native, InitSupconNative)
