// Loss bindings: lossForward / lossBackward / lossForwardBackward (synchronous, for the tfjs
// tape) and lossForwardBackwardAsync (libuv pool, returns a Promise; it copies its inputs so the
// caller's arrays may change while it runs). The extra contrast rows' gradient is computed when
// args.wantContrastGrad is true (forwardBackward: result.contrastGrad) or lossBackward is given an
// output array for it.
#include <napi.h>

#include <limits>
#include <memory>
#include <vector>

#include "args.h"
#include "supcon/loss.h"

namespace supcon_napi {
namespace {

using supcon::LossInputs;
using supcon::LossSpec;
using supcon::RunOptions;

struct LossCall {
  LossSpec spec;
  LossInputs in;
  RunOptions run;
  bool wantGrad = true;
  bool wantContrastGrad = false;  // and there are extra rows
  // Owned copies (async only).
  std::vector<float> features, contrast;
  std::vector<int32_t> labels, contrastLabels;
  std::vector<uint8_t> labelSets, contrastLabelSets;

  int64_t anchors() const { return supcon::numAnchors(spec, in); }
  int64_t featureCount() const { return in.batch * in.views * in.dim; }
  int64_t contrastCount() const { return in.contrastRows * in.dim; }

  void copyInputs() {
    features.assign(in.features, in.features + featureCount());
    in.features = features.data();
    if (in.labels) {
      labels.assign(in.labels, in.labels + in.batch);
      in.labels = labels.data();
    }
    if (in.labelSets) {
      labelSets.assign(in.labelSets, in.labelSets + in.batch * in.numLabels);
      in.labelSets = labelSets.data();
    }
    if (in.contrastRows > 0) {
      contrast.assign(in.contrastFeatures, in.contrastFeatures + in.contrastRows * in.dim);
      in.contrastFeatures = contrast.data();
      if (in.contrastLabels) {
        contrastLabels.assign(in.contrastLabels, in.contrastLabels + in.contrastRows);
        in.contrastLabels = contrastLabels.data();
      }
      if (in.contrastLabelSets) {
        contrastLabelSets.assign(in.contrastLabelSets, in.contrastLabelSets + in.contrastRows * in.numLabels);
        in.contrastLabelSets = contrastLabelSets.data();
      }
    }
  }
};

// Reads the arguments object of a loss call (src/native.ts, NativeLossArgs). Options arrive by
// name; their values are checked by the core.
LossCall parseCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    typeError(env, "args", "an arguments object", info.Length() < 1 ? "nothing" : describeType(info[0]));
  Napi::Object o = info[0].As<Napi::Object>();
  LossCall c;
  const int64_t kMax = std::numeric_limits<int32_t>::max();
  c.in.batch = intField(o, "batch", 1, kMax);
  c.in.views = intField(o, "views", 1, kMax);
  c.in.dim = intField(o, "dim", 1, kMax);
  c.in.contrastRows = intField(o, "contrastRows", 0, kMax);
  if (c.in.batch > kMax / c.in.views || c.in.batch * c.in.views > kMax / c.in.dim || c.in.contrastRows > kMax / c.in.dim)
    typeError(env, "features", "sizes below 2^31 elements", "batch * views * dim or contrastRows * dim past it");
  c.in.features = floatArray(o, "features", c.in.batch * c.in.views * c.in.dim);
  c.in.labels = intArray(o, "labels", c.in.batch, true);
  // Label sets: [batch, numLabels] bytes (numLabels 0 without them).
  c.in.numLabels = intField(o, "numLabels", 0, kMax);
  if (c.in.numLabels > 0 && (c.in.batch + c.in.contrastRows) > kMax / c.in.numLabels)
    typeError(env, "labelSets", "sizes below 2^31 elements", "(batch + contrastRows) * numLabels past it");
  if (c.in.numLabels > 0) c.in.labelSets = byteArray(o, "labelSets", c.in.batch * c.in.numLabels);
  if (c.in.contrastRows > 0) {
    c.in.contrastFeatures = floatArray(o, "contrastFeatures", c.in.contrastRows * c.in.dim);
    c.in.contrastLabels = intArray(o, "contrastLabels", c.in.contrastRows, true);
    if (c.in.numLabels > 0)
      c.in.contrastLabelSets = byteArray(o, "contrastLabelSets", c.in.contrastRows * c.in.numLabels, true);
  }
  c.spec.temperature = static_cast<float>(numberField(o, "temperature"));
  c.spec.baseTemperature = static_cast<float>(numberField(o, "baseTemperature"));
  c.spec.variant = enumField(o, "variant", supcon::kVariantNames);
  c.spec.contrastMode = enumField(o, "contrastMode", supcon::kContrastModeNames);
  c.spec.normalize = boolField(o, "normalize");
  c.spec.reduction = enumField(o, "reduction", supcon::kReductionNames);
  c.spec.denominator = enumField(o, "denominator", supcon::kDenominatorNames);
  c.spec.positiveWeighting = enumField(o, "positiveWeighting", supcon::kPositiveWeightingNames);
  // -1: no cap.
  c.spec.positivesCap = intField(o, "positivesCap", -1, kMax);
  c.spec.positivesCapSeed = static_cast<uint32_t>(intField(o, "positivesCapSeed", 0, 4294967295LL));
  c.run.device = enumField(o, "device", supcon::kDeviceNames);
  c.run.precision = enumField(o, "precision", supcon::kPrecisionNames);
  c.wantGrad = boolField(o, "wantGrad");
  // Optional (absent: false); only meaningful with the gradient and extra rows.
  c.wantContrastGrad = optionalBool(o, "wantContrastGrad") && c.wantGrad && c.in.contrastRows > 0;
  return c;
}

Napi::Object resultObject(Napi::Env env, const supcon::ForwardResult& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("validAnchors", static_cast<double>(r.validAnchors));
  out.Set("workspaceBytes", static_cast<double>(r.workspaceBytes));
  return out;
}

Napi::Value LossForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LossCall c = parseCall(info);
  Napi::Float32Array perAnchor = Napi::Float32Array::New(env, static_cast<size_t>(c.anchors()));
  Napi::Float32Array stats = Napi::Float32Array::New(env, static_cast<size_t>(supcon::statsSize(c.spec, c.in)));
  supcon::ForwardResult r;
  supcon::Status st = supcon::forward(c.spec, c.in, c.run, perAnchor.Data(), stats.Data(), &r);
  if (!st.isOk()) throwStatus(env, st);
  Napi::Object out = resultObject(env, r);
  out.Set("perAnchor", perAnchor);
  out.Set("stats", stats);
  return out;
}

// lossBackward(args, stats: Float32Array, upstream: Float32Array, contrastGrad?: Float32Array)
//   -> Float32Array grad; contrastGrad, when given ([contrastRows * dim]), receives the extra rows'.
Napi::Value LossBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LossCall c = parseCall(info);
  if (info.Length() < 3) typeError(env, "lossBackward", "(args, stats, upstream)", std::to_string(info.Length()) + " arguments");
  Napi::Object holder = Napi::Object::New(env);
  holder.Set("stats", info[1]);
  holder.Set("upstream", info[2]);
  const float* stats = floatArray(holder, "stats", supcon::statsSize(c.spec, c.in));
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    typeError(env, "upstream", "a Float32Array", describeType(info[2]));
  const int64_t upLen = static_cast<int64_t>(info[2].As<Napi::TypedArray>().ElementLength());
  const float* upstream = upLen > 0 ? floatArray(holder, "upstream", upLen) : nullptr;
  float* contrastGrad = nullptr;
  if (info.Length() >= 4 && !info[3].IsUndefined() && !info[3].IsNull()) {
    holder.Set("contrastGrad", info[3]);
    contrastGrad = floatArray(holder, "contrastGrad", c.contrastCount());
  }
  Napi::Float32Array grad = Napi::Float32Array::New(env, static_cast<size_t>(c.featureCount()));
  supcon::BackwardResult r;
  supcon::Status st = supcon::backward(c.spec, c.in, c.run, stats, upstream, upLen, grad.Data(), contrastGrad, &r);
  if (!st.isOk()) throwStatus(env, st);
  return grad;
}

Napi::Value LossForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LossCall c = parseCall(info);
  Napi::Float32Array perAnchor = Napi::Float32Array::New(env, static_cast<size_t>(c.anchors()));
  Napi::Float32Array grad, contrastGrad;
  if (c.wantGrad) grad = Napi::Float32Array::New(env, static_cast<size_t>(c.featureCount()));
  if (c.wantContrastGrad) contrastGrad = Napi::Float32Array::New(env, static_cast<size_t>(c.contrastCount()));
  supcon::ForwardResult r;
  supcon::Status st;
  if (c.wantGrad) {
    st = supcon::forwardBackward(c.spec, c.in, c.run, perAnchor.Data(), grad.Data(),
                                 c.wantContrastGrad ? contrastGrad.Data() : nullptr, &r);
  } else {
    st = supcon::forward(c.spec, c.in, c.run, perAnchor.Data(), nullptr, &r);
  }
  if (!st.isOk()) throwStatus(env, st);
  Napi::Object out = resultObject(env, r);
  out.Set("perAnchor", perAnchor);
  out.Set("grad", c.wantGrad ? Napi::Value(grad) : env.Null());
  out.Set("contrastGrad", c.wantContrastGrad ? Napi::Value(contrastGrad) : env.Null());
  return out;
}

class LossWorker : public Napi::AsyncWorker {
 public:
  LossWorker(Napi::Env env, LossCall call)
      : Napi::AsyncWorker(env, "supconLoss"), call_(std::move(call)), deferred_(Napi::Promise::Deferred::New(env)) {
    call_.copyInputs();
    perAnchor_.resize(static_cast<size_t>(call_.anchors()));
    if (call_.wantGrad) grad_.resize(static_cast<size_t>(call_.featureCount()));
    if (call_.wantContrastGrad) contrastGrad_.resize(static_cast<size_t>(call_.contrastCount()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    status_ = call_.wantGrad ? supcon::forwardBackward(call_.spec, call_.in, call_.run, perAnchor_.data(), grad_.data(),
                                                       call_.wantContrastGrad ? contrastGrad_.data() : nullptr, &result_)
                             : supcon::forward(call_.spec, call_.in, call_.run, perAnchor_.data(), nullptr, &result_);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.isOk()) {
      try {
        throwStatus(env, status_);
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
      return;
    }
    Napi::Object out = resultObject(env, result_);
    out.Set("perAnchor", copyOut(env, perAnchor_));
    out.Set("grad", call_.wantGrad ? Napi::Value(copyOut(env, grad_)) : env.Null());
    out.Set("contrastGrad", call_.wantContrastGrad ? Napi::Value(copyOut(env, contrastGrad_)) : env.Null());
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  static Napi::Float32Array copyOut(Napi::Env env, const std::vector<float>& v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  }
  LossCall call_;
  Napi::Promise::Deferred deferred_;
  std::vector<float> perAnchor_, grad_, contrastGrad_;
  supcon::ForwardResult result_;
  supcon::Status status_;
};

Napi::Value LossForwardBackwardAsync(const Napi::CallbackInfo& info) {
  LossCall c = parseCall(info);
  auto* worker = new LossWorker(info.Env(), std::move(c));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// The names each option accepts, from the core's tables: a test compares them with the lists
// of src/loss/options.ts.
template <typename E, size_t N>
Napi::Array names(Napi::Env env, const supcon::EnumName<E> (&table)[N]) {
  Napi::Array out = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) out.Set(static_cast<uint32_t>(i), Napi::String::New(env, table[i].name));
  return out;
}

Napi::Value LossOptionNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("variant", names(env, supcon::kVariantNames));
  out.Set("contrastMode", names(env, supcon::kContrastModeNames));
  out.Set("reduction", names(env, supcon::kReductionNames));
  out.Set("denominator", names(env, supcon::kDenominatorNames));
  out.Set("positiveWeighting", names(env, supcon::kPositiveWeightingNames));
  out.Set("device", names(env, supcon::kDeviceNames));
  out.Set("precision", names(env, supcon::kPrecisionNames));
  return out;
}

}  // namespace

void registerLoss(Napi::Env env, Napi::Object exports) {
  exports.Set("lossOptionNames", Napi::Function::New(env, LossOptionNames, "lossOptionNames"));
  exports.Set("lossForward", Napi::Function::New(env, LossForward, "lossForward"));
  exports.Set("lossBackward", Napi::Function::New(env, LossBackward, "lossBackward"));
  exports.Set("lossForwardBackward", Napi::Function::New(env, LossForwardBackward, "lossForwardBackward"));
  exports.Set("lossForwardBackwardAsync", Napi::Function::New(env, LossForwardBackwardAsync, "lossForwardBackwardAsync"));
}

}  // namespace supcon_napi
