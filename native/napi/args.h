// Argument reading for the binding. The TypeScript layer (src/validate.ts) validates every
// argument first with user-facing messages, and the core checks its own rules (a Status); the
// binding only reads types: what a value is, and the lengths of the arrays it hands to C++ (so
// that garbage from a direct call cannot make native code read or write out of bounds).
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "supcon/loss.h"
#include "supcon/status.h"

namespace supcon_napi {

// Throws a JS error for a non-OK Status; err.code is ERR_SUPCON_<KIND>. A Status made by
// Status::invalidArgument also carries err.argument, err.expected and err.received, from which
// the TypeScript layer rebuilds its InvalidArgumentError.
inline void throwStatus(Napi::Env env, const supcon::Status& st) {
  const char* code = "ERR_SUPCON_INTERNAL";
  switch (st.code()) {
    case supcon::StatusCode::kInvalidArgument: code = "ERR_SUPCON_INVALID_ARGUMENT"; break;
    case supcon::StatusCode::kOutOfMemory: code = "ERR_SUPCON_OUT_OF_MEMORY"; break;
    case supcon::StatusCode::kUnavailable: code = "ERR_SUPCON_UNAVAILABLE"; break;
    case supcon::StatusCode::kCommunication: code = "ERR_SUPCON_MPI"; break;
    default: break;
  }
  Napi::Error err = st.code() == supcon::StatusCode::kInvalidArgument ? Napi::RangeError::New(env, st.message())
                                                                       : Napi::Error::New(env, st.message());
  err.Set("code", Napi::String::New(env, code));
  if (!st.argument().empty()) {
    err.Set("argument", Napi::String::New(env, st.argument()));
    err.Set("expected", Napi::String::New(env, st.expected()));
    err.Set("received", Napi::String::New(env, st.received()));
  }
  throw err;
}

[[noreturn]] inline void typeError(Napi::Env env, const std::string& message) {
  Napi::TypeError err = Napi::TypeError::New(env, message);
  err.Set("code", Napi::String::New(env, "ERR_SUPCON_INVALID_ARGUMENT"));
  throw err;
}

// A value of the wrong type or size in a direct call, in the package's one message form, with its
// parts (as throwStatus), so that TypeScript raises the same InvalidArgumentError.
[[noreturn]] inline void typeError(Napi::Env env, const std::string& argument, const std::string& expected,
                                   const std::string& received) {
  Napi::TypeError err =
      Napi::TypeError::New(env, "Expected " + expected + " for " + argument + " but received " + received);
  err.Set("code", Napi::String::New(env, "ERR_SUPCON_INVALID_ARGUMENT"));
  err.Set("argument", Napi::String::New(env, argument));
  err.Set("expected", Napi::String::New(env, expected));
  err.Set("received", Napi::String::New(env, received));
  throw err;
}

// What a value is, for messages: "a string", "a number", "an object", ...
inline std::string describeType(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) return "a typed array of the wrong type";
  if (v.IsArray()) return "an array";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  return "an object";
}

inline double numberField(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) typeError(o.Env(), name, "a number", describeType(v));
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t intField(const Napi::Object& o, const char* name, int64_t min, int64_t max) {
  double d = numberField(o, name);
  if (!(d >= double(min) && d <= double(max)) || d != static_cast<double>(static_cast<int64_t>(d)))
    typeError(o.Env(), name, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]",
              std::to_string(d));
  return static_cast<int64_t>(d);
}

// The enum value named by a string field (names: the core's tables, supcon/loss.h).
template <typename E, size_t N>
E enumField(const Napi::Object& o, const char* name, const supcon::EnumName<E> (&names)[N]) {
  Napi::Value v = o.Get(name);
  E out{};
  if (!v.IsString() || !supcon::enumFromName(names, v.As<Napi::String>().Utf8Value().c_str(), &out)) {
    std::string expected = "one of";
    for (size_t i = 0; i < N; ++i) expected += std::string(i ? ", '" : " '") + names[i].name + "'";
    typeError(o.Env(), name, expected, v.IsString() ? "'" + v.As<Napi::String>().Utf8Value() + "'" : describeType(v));
  }
  return out;
}

inline bool boolField(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsBoolean()) typeError(o.Env(), name, "a boolean", describeType(v));
  return v.As<Napi::Boolean>().Value();
}

// A boolean field that may be absent (false).
inline bool optionalBool(const Napi::Object& o, const char* name) {
  return o.Get(name).IsUndefined() ? false : boolField(o, name);
}

// A typed array of the right element type and exact length, or null/undefined when optional.
template <typename T>
T* typedArrayField(const Napi::Object& o, const char* name, napi_typedarray_type type, int64_t length,
                   bool optional) {
  Napi::Value v = o.Get(name);
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  const char* kind = type == napi_float32_array ? "a Float32Array"
                     : type == napi_int32_array ? "an Int32Array"
                     : type == napi_uint8_array ? "a Uint8Array"
                                                : "a typed array";
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    typeError(o.Env(), name, kind, describeType(v));
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(arr.ElementLength()) != length)
    typeError(o.Env(), name, std::string(kind) + " of length " + std::to_string(length),
              "one of length " + std::to_string(arr.ElementLength()));
  if (length == 0) return nullptr;
  Napi::ArrayBuffer buf = arr.ArrayBuffer();
  if (buf.IsDetached()) typeError(o.Env(), name, std::string(kind) + " over a live buffer", "a detached one");
  return reinterpret_cast<T*>(static_cast<uint8_t*>(buf.Data()) + arr.ByteOffset());
}

inline float* floatArray(const Napi::Object& o, const char* name, int64_t length, bool optional = false) {
  return typedArrayField<float>(o, name, napi_float32_array, length, optional);
}
inline int32_t* intArray(const Napi::Object& o, const char* name, int64_t length, bool optional = false) {
  return typedArrayField<int32_t>(o, name, napi_int32_array, length, optional);
}
inline uint8_t* byteArray(const Napi::Object& o, const char* name, int64_t length, bool optional = false) {
  return typedArrayField<uint8_t>(o, name, napi_uint8_array, length, optional);
}

void registerLoss(Napi::Env env, Napi::Object exports);
// MPI collectives (native/napi/mpi_binding.cpp; stubs that report why when built without MPI).
void registerMpi(Napi::Env env, Napi::Object exports);
// The reductions of synchronized batch norm over MPI_COMM_WORLD (supcon/nn.h's reduceMoments and
// reduceSums), for the conv + batch-norm binding; without MPI they return kUnavailable.
std::function<supcon::Status(int64_t, double*, double*, double*)> mpiMomentReducer();
std::function<supcon::Status(int64_t, double*, double*)> mpiSumReducer();
// Native tfjs CPU kernels (native/napi/nn_binding.cpp).
void registerNn(Napi::Env env, Napi::Object exports);

}  // namespace supcon_napi
