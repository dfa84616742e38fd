// MPI bindings (native/mpi/mpi_comm.h) on typed arrays, for src/distributed.ts:
//   mpiInfo() -> { compiled, reason?, version?, initialized, rank, size }   (always present)
// and, in a build with MPI only:
//   mpiInit(), mpiAllreduceSum(data), mpiAllgather(send, recv), mpiAllgatherv(send, recv, counts),
//   mpiReduceScatterSum(send, recv, counts), mpiBroadcast(data, root), mpiBarrier(), mpiAbort(code),
//   mpiFinalize()
// Data are Float32Array, Float64Array or Int32Array (and Uint8Array for gathers and broadcasts),
// send and receive of the same type; counts are element counts per rank (a number array).
// Collectives run synchronously on the calling (main) thread; they wait without spinning.
#include <napi.h>

#include <string>
#include <vector>

#include "args.h"

#if defined(SUPCON_WITH_MPI)
#include "../mpi/mpi_comm.h"
#endif

#ifndef SUPCON_MPI_REASON
#define SUPCON_MPI_REASON "this build of the addon has no MPI (node-gyp builds and prebuilt binaries never do)"
#endif

namespace supcon_napi {
namespace {

#if defined(SUPCON_WITH_MPI)
using supcon::mpi::Dtype;

struct TypedData {
  void* data = nullptr;
  int64_t length = 0;
  Dtype type = Dtype::kFloat32;
  napi_typedarray_type napiType = napi_float32_array;
};

TypedData typedData(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray()) typeError(env, name, "a Float32Array, Float64Array, Int32Array or Uint8Array", describeType(v));
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  TypedData t;
  t.napiType = a.TypedArrayType();
  switch (t.napiType) {
    case napi_float32_array: t.type = Dtype::kFloat32; break;
    case napi_float64_array: t.type = Dtype::kFloat64; break;
    case napi_int32_array: t.type = Dtype::kInt32; break;
    case napi_uint8_array: t.type = Dtype::kUint8; break;
    default: typeError(env, name, "a Float32Array, Float64Array, Int32Array or Uint8Array", "another typed array");
  }
  Napi::ArrayBuffer buf = a.ArrayBuffer();
  if (buf.IsDetached()) typeError(env, name, "a typed array over a live buffer", "a detached one");
  t.length = static_cast<int64_t>(a.ElementLength());
  t.data = static_cast<uint8_t*>(buf.Data()) + a.ByteOffset();
  return t;
}

void check(Napi::Env env, const supcon::Status& st) {
  if (!st.isOk()) throwStatus(env, st);
}

std::vector<int64_t> counts(Napi::Env env, const Napi::Value& v, const char* name) {
  const int size = supcon::mpi::size();
  if (!v.IsArray() || v.As<Napi::Array>().Length() != static_cast<uint32_t>(size))
    typeError(env, name, "an array of " + std::to_string(size) + " counts (one per rank)", describeType(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    Napi::Value c = a.Get(static_cast<uint32_t>(r));
    const double d = c.IsNumber() ? c.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int64_t>(d)))
      typeError(env, std::string(name) + "[" + std::to_string(r) + "]", "an integer count in [0, 2^31)",
                c.IsNumber() ? std::to_string(d) : describeType(c));
    out[static_cast<size_t>(r)] = static_cast<int64_t>(d);
  }
  return out;
}

void sameType(Napi::Env env, const TypedData& a, const TypedData& b, const char* name) {
  if (a.napiType != b.napiType) typeError(env, name, "a typed array of the send array's type", "another type");
}

void requireArgs(const Napi::CallbackInfo& info, size_t n, const char* signature) {
  if (info.Length() < n) typeError(info.Env(), signature, std::to_string(n) + " arguments", std::to_string(info.Length()));
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  check(info.Env(), supcon::mpi::init());
  return info.Env().Undefined();
}

Napi::Value AllreduceSum(const Napi::CallbackInfo& info) {
  requireArgs(info, 1, "mpiAllreduceSum(data)");
  TypedData d = typedData(info.Env(), info[0], "data");
  check(info.Env(), supcon::mpi::allreduceSum(d.data, d.length, d.type));
  return info.Env().Undefined();
}

Napi::Value Allgather(const Napi::CallbackInfo& info) {
  requireArgs(info, 2, "mpiAllgather(send, recv)");
  Napi::Env env = info.Env();
  TypedData s = typedData(env, info[0], "send"), r = typedData(env, info[1], "recv");
  sameType(env, s, r, "recv");
  if (r.length != s.length * supcon::mpi::size())
    typeError(env, "recv", "a typed array of " + std::to_string(s.length * supcon::mpi::size()) + " elements (send x ranks)",
              "one of " + std::to_string(r.length));
  check(env, supcon::mpi::allgather(s.data, s.length, r.data, s.type));
  return env.Undefined();
}

int64_t total(const std::vector<int64_t>& c) {
  int64_t t = 0;
  for (int64_t v : c) t += v;
  return t;
}

Napi::Value Allgatherv(const Napi::CallbackInfo& info) {
  requireArgs(info, 3, "mpiAllgatherv(send, recv, counts)");
  Napi::Env env = info.Env();
  TypedData s = typedData(env, info[0], "send"), r = typedData(env, info[1], "recv");
  sameType(env, s, r, "recv");
  const std::vector<int64_t> c = counts(env, info[2], "counts");
  if (s.length != c[static_cast<size_t>(supcon::mpi::rank())])
    typeError(env, "send", std::to_string(c[static_cast<size_t>(supcon::mpi::rank())]) + " elements (counts[rank])",
              std::to_string(s.length));
  if (r.length != total(c))
    typeError(env, "recv", std::to_string(total(c)) + " elements (the sum of counts)", std::to_string(r.length));
  check(env, supcon::mpi::allgatherv(s.data, r.data, c.data(), s.type));
  return env.Undefined();
}

Napi::Value ReduceScatterSum(const Napi::CallbackInfo& info) {
  requireArgs(info, 3, "mpiReduceScatterSum(send, recv, counts)");
  Napi::Env env = info.Env();
  TypedData s = typedData(env, info[0], "send"), r = typedData(env, info[1], "recv");
  sameType(env, s, r, "recv");
  const std::vector<int64_t> c = counts(env, info[2], "counts");
  if (s.length != total(c))
    typeError(env, "send", std::to_string(total(c)) + " elements (the sum of counts)", std::to_string(s.length));
  if (r.length != c[static_cast<size_t>(supcon::mpi::rank())])
    typeError(env, "recv", std::to_string(c[static_cast<size_t>(supcon::mpi::rank())]) + " elements (counts[rank])",
              std::to_string(r.length));
  check(env, supcon::mpi::reduceScatterSum(s.data, r.data, c.data(), s.type));
  return env.Undefined();
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  requireArgs(info, 2, "mpiBroadcast(data, root)");
  Napi::Env env = info.Env();
  TypedData d = typedData(env, info[0], "data");
  if (!info[1].IsNumber()) typeError(env, "root", "a rank number", describeType(info[1]));
  const double root = info[1].As<Napi::Number>().DoubleValue();
  if (root != static_cast<double>(static_cast<int>(root)))
    typeError(env, "root", "an integer rank", std::to_string(root));
  check(env, supcon::mpi::broadcast(d.data, d.length, static_cast<int>(root), d.type));
  return env.Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  check(info.Env(), supcon::mpi::barrier());
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  supcon::mpi::abort(code);
  return info.Env().Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  check(info.Env(), supcon::mpi::finalize());
  return info.Env().Undefined();
}
#endif

#if !defined(SUPCON_WITH_MPI)
supcon::Status noMpi() {
  return supcon::Status::unavailable(std::string("synchronized batch norm needs MPI, and ") + SUPCON_MPI_REASON);
}
#endif

Napi::Value MpiInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
#if defined(SUPCON_WITH_MPI)
  out.Set("compiled", true);
  out.Set("version", supcon::mpi::libraryVersion());
  out.Set("initialized", supcon::mpi::initialized());
  out.Set("finalized", supcon::mpi::finalized());
  out.Set("rank", supcon::mpi::rank());
  out.Set("size", supcon::mpi::size());
#else
  out.Set("compiled", false);
  out.Set("reason", SUPCON_MPI_REASON);
  out.Set("initialized", false);
  out.Set("finalized", false);
  out.Set("rank", 0);
  out.Set("size", 1);
#endif
  return out;
}

}  // namespace

// Every rank's (count, mean[C], M2[C]) gathered, then combined in rank order with the
// parallel-variance formula (Chan, Golub & LeVeque), so every rank gets the same float64 moments.
std::function<supcon::Status(int64_t, double*, double*, double*)> mpiMomentReducer() {
#if defined(SUPCON_WITH_MPI)
  return [](int64_t channels, double* count, double* mean, double* m2) {
    const int64_t stride = 1 + 2 * channels;
    std::vector<double> mine(static_cast<size_t>(stride)), all(static_cast<size_t>(stride * supcon::mpi::size()));
    mine[0] = *count;
    std::copy(mean, mean + channels, mine.begin() + 1);
    std::copy(m2, m2 + channels, mine.begin() + 1 + channels);
    SUPCON_RETURN_IF_ERROR(supcon::mpi::allgather(mine.data(), stride, all.data(), supcon::mpi::Dtype::kFloat64));
    double total = 0;
    for (int r = 0; r < supcon::mpi::size(); ++r) total += all[static_cast<size_t>(r * stride)];
    for (int64_t c = 0; c < channels; ++c) {
      double mu = 0, q = 0;
      for (int r = 0; r < supcon::mpi::size(); ++r) mu += all[r * stride] * all[r * stride + 1 + c];
      mu /= total;
      for (int r = 0; r < supcon::mpi::size(); ++r) {
        const double d = all[r * stride + 1 + c] - mu;
        q += all[r * stride + 1 + channels + c] + all[r * stride] * d * d;
      }
      mean[c] = mu;
      m2[c] = q;
    }
    *count = total;
    return supcon::Status::ok();
  };
#else
  return [](int64_t, double*, double*, double*) { return noMpi(); };
#endif
}

// The per-channel gradient sums, [sum g | sum g (z - mean)], summed over ranks in one allreduce.
std::function<supcon::Status(int64_t, double*, double*)> mpiSumReducer() {
#if defined(SUPCON_WITH_MPI)
  return [](int64_t channels, double* sumG, double* sumGZ) {
    std::vector<double> both(static_cast<size_t>(2 * channels));
    std::copy(sumG, sumG + channels, both.begin());
    std::copy(sumGZ, sumGZ + channels, both.begin() + channels);
    SUPCON_RETURN_IF_ERROR(supcon::mpi::allreduceSum(both.data(), 2 * channels, supcon::mpi::Dtype::kFloat64));
    std::copy(both.begin(), both.begin() + channels, sumG);
    std::copy(both.begin() + channels, both.end(), sumGZ);
    return supcon::Status::ok();
  };
#else
  return [](int64_t, double*, double*) { return noMpi(); };
#endif
}

void registerMpi(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiInfo", Napi::Function::New(env, MpiInfo, "mpiInfo"));
#if defined(SUPCON_WITH_MPI)
  exports.Set("mpiInit", Napi::Function::New(env, Init, "mpiInit"));
  exports.Set("mpiAllreduceSum", Napi::Function::New(env, AllreduceSum, "mpiAllreduceSum"));
  exports.Set("mpiAllgather", Napi::Function::New(env, Allgather, "mpiAllgather"));
  exports.Set("mpiAllgatherv", Napi::Function::New(env, Allgatherv, "mpiAllgatherv"));
  exports.Set("mpiReduceScatterSum", Napi::Function::New(env, ReduceScatterSum, "mpiReduceScatterSum"));
  exports.Set("mpiBroadcast", Napi::Function::New(env, Broadcast, "mpiBroadcast"));
  exports.Set("mpiBarrier", Napi::Function::New(env, Barrier, "mpiBarrier"));
  exports.Set("mpiAbort", Napi::Function::New(env, Abort, "mpiAbort"));
  exports.Set("mpiFinalize", Napi::Function::New(env, Finalize, "mpiFinalize"));
#endif
}

}  // namespace supcon_napi
