// The C++ runner of the shared edge-case table (test/fixtures/loss-edge-cases.json; the
// TypeScript runner is test/loss/edge_cases.test.ts). Every row runs through a loss
// implementation (the CPU core, the CUDA kernels on a GPU or on the emulator): 'match' rows
// against the float64 reference (reference.h), 'error' rows for a kInvalidArgument Status naming
// the row's argument. Rows marked tsOnly describe inputs the C++ API cannot express.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "check.h"
#include "json.h"
#include "reference.h"
#include "supcon/loss.h"

#ifndef SUPCON_SOURCE_DIR
#error "SUPCON_SOURCE_DIR must name the repository root (native/test/CMakeLists.txt defines it)"
#endif

namespace supcon_test {

struct EdgeBackend {
  std::string name;
  supcon::RunOptions run;
  std::function<supcon::Status(const supcon::LossSpec&, const supcon::LossInputs&, const supcon::RunOptions&, float*,
                               float*, supcon::ForwardResult*)>
      forward;
  std::function<supcon::Status(const supcon::LossSpec&, const supcon::LossInputs&, const supcon::RunOptions&,
                               const float*, const float*, int64_t, float*, supcon::BackwardResult*)>
      backward;
};

// u(seed, i) in [-1, 1): 32-bit integer hashing, the same in test/loss/edge_cases.test.ts.
inline double edgeUniform(uint32_t seed, uint32_t i) {
  uint32_t h = seed * 0x9E3779B1u + i * 0x85EBCA77u;
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return double(h) / 4294967296.0 * 2.0 - 1.0;
}

inline double edgeNumber(const Json& v) {
  if (v.type == Json::Type::kString) {
    if (v.string == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (v.string == "Infinity") return std::numeric_limits<double>::infinity();
    if (v.string == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return v.number;
}

// The values of a features spec (a literal array or a generator) for rows x dim.
inline std::vector<float> edgeValues(const Json& spec, int64_t rows, int64_t dim) {
  const size_t n = static_cast<size_t>(rows * dim);
  std::vector<double> x(n, 0.0);
  if (spec.type == Json::Type::kArray) {
    for (size_t i = 0; i < n; ++i) x[i] = edgeNumber(spec[i]);
  } else {
    const Json& r = spec["random"];
    const uint32_t seed = static_cast<uint32_t>(r["seed"].number);
    const double scale = r["scale"].number;
    for (size_t i = 0; i < n; ++i) x[i] = double(float(edgeUniform(seed, static_cast<uint32_t>(i)) * scale));
    if (r.has("rowNorm"))
      for (int64_t row = 0; row < rows; ++row) {
        double ss = 0;
        for (int64_t k = 0; k < dim; ++k) ss += x[row * dim + k] * x[row * dim + k];
        const double f = ss > 0 ? r["rowNorm"].number / std::sqrt(ss) : 0.0;
        for (int64_t k = 0; k < dim; ++k) x[row * dim + k] *= f;
      }
    for (const Json& z : spec["zeroRows"].array)
      std::fill(x.begin() + int64_t(z.number) * dim, x.begin() + (int64_t(z.number) + 1) * dim, 0.0);
    for (const Json& c : spec["copyRows"].array)
      std::copy(x.begin() + int64_t(c[1].number) * dim, x.begin() + (int64_t(c[1].number) + 1) * dim,
                x.begin() + int64_t(c[0].number) * dim);
  }
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i]);
  return out;
}

struct EdgeRow {
  std::string name;
  supcon::LossSpec spec;
  int64_t batch = 0, views = 1, dim = 0, extra = 0;
  bool labeled = false, extraLabeled = false;
  std::vector<float> features, contrast;
  std::vector<int32_t> labels, contrastLabels;
  supcon::LossInputs inputs() const {
    supcon::LossInputs in;
    in.features = features.data();
    in.batch = batch;
    in.views = views;
    in.dim = dim;
    in.labels = labeled ? labels.data() : nullptr;
    in.contrastRows = extra;
    in.contrastFeatures = extra ? contrast.data() : nullptr;
    in.contrastLabels = extra && extraLabeled ? contrastLabels.data() : nullptr;
    return in;
  }
};

inline EdgeRow edgeRow(const Json& j) {
  using namespace supcon;
  EdgeRow r;
  r.name = j["name"].string;
  const Json& shape = j["shape"];
  r.batch = int64_t(shape[0].number);
  r.views = shape.size() == 3 ? int64_t(shape[1].number) : 1;
  r.dim = int64_t(shape[shape.size() - 1].number);
  r.features = edgeValues(j["features"], r.batch * r.views, r.dim);
  for (const Json& s : j["scaleRows"].array)
    for (int64_t k = 0; k < r.dim; ++k) {
      float& v = r.features[size_t(int64_t(s[0].number) * r.dim + k)];
      v = static_cast<float>(double(v) * s[1].number);
    }
  r.labeled = !j["labels"].isNull();
  for (const Json& l : j["labels"].array) r.labels.push_back(static_cast<int32_t>(l.number));
  if (j.has("contrast")) {
    const Json& c = j["contrast"];
    r.extra = int64_t(c["rows"].number);
    r.contrast = edgeValues(c["features"], r.extra, r.dim);
    r.extraLabeled = !c["labels"].isNull();
    for (const Json& l : c["labels"].array) r.contrastLabels.push_back(static_cast<int32_t>(l.number));
  }
  const Json& o = j["options"];
  if (o.has("temperature")) r.spec.temperature = static_cast<float>(o["temperature"].number);
  if (o.has("baseTemperature")) r.spec.baseTemperature = static_cast<float>(o["baseTemperature"].number);
  if (o.has("variant")) enumFromName(kVariantNames, o["variant"].string.c_str(), &r.spec.variant);
  if (o.has("contrastMode")) enumFromName(kContrastModeNames, o["contrastMode"].string.c_str(), &r.spec.contrastMode);
  if (o.has("reduction")) enumFromName(kReductionNames, o["reduction"].string.c_str(), &r.spec.reduction);
  if (o.has("normalize")) r.spec.normalize = o["normalize"].boolean;
  return r;
}

// "options.contrast.features", "contrastFeatures" -> "contrastfeatures".
inline std::string edgeArgumentKey(std::string a) {
  for (const char* prefix : {"options.", "input."})
    if (a.rfind(prefix, 0) == 0) a = a.substr(std::char_traits<char>::length(prefix));
  std::string out;
  for (char c : a)
    if (c != '.') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Tolerances of docs/loss.md ("Numerics"), with the floors float32 itself sets at its edges: the
// loss within the rounding of its scores (max|s| ~ max||z||^2 / tau), each gradient row within
// the rounding of the terms that make it (of size |z| / tau_b, over ||x|| with normalize).
inline void expectEdgeMatch(const EdgeRow& row, const Json& j, const EdgeBackend& b) {
  using namespace supcon;
  const LossInputs in = row.inputs();
  const std::string what = b.name + ": " + row.name;
  const int64_t anchors = numAnchors(row.spec, in);
  std::vector<float> per(size_t(anchors), NAN), stats(size_t(statsSize(row.spec, in)), NAN), grad(row.features.size(), NAN);
  ForwardResult fr;
  Status st = b.forward(row.spec, in, b.run, per.data(), stats.data(), &fr);
  CHECK(st.isOk()) << what << ": forward: " << st.message();
  if (!st.isOk()) return;
  const std::vector<float> up(size_t(row.spec.reduction == Reduction::kNone ? anchors : 1), 1.0f);
  BackwardResult br;
  st = b.backward(row.spec, in, b.run, stats.data(), up.data(), int64_t(up.size()), grad.data(), &br);
  CHECK(st.isOk()) << what << ": backward: " << st.message();
  if (!st.isOk()) return;
  const ReferenceResult ref = referenceLoss(row.spec, in);

  double zmax = 0, q = 0;
  std::vector<double> norms(size_t(row.batch * row.views));
  for (int64_t r = 0; r < row.batch * row.views + row.extra; ++r) {
    const float* x = r < row.batch * row.views ? &row.features[size_t(r * row.dim)]
                                                : &row.contrast[size_t((r - row.batch * row.views) * row.dim)];
    double ss = 0;
    for (int64_t k = 0; k < row.dim; ++k) ss += double(x[k]) * x[k];
    q = std::max(q, ss);
    if (r < row.batch * row.views) norms[size_t(r)] = std::sqrt(ss);
    for (int64_t k = 0; k < row.dim; ++k) zmax = std::max(zmax, double(std::fabs(x[k])));
  }
  if (row.spec.normalize) q = 1, zmax = 1;
  const double tau = row.spec.temperature, base = row.spec.effectiveBaseTemperature(), scale = tau / base;
  const bool exact = j["exact"].boolean;
  const double scoreFloor = exact ? 0.0 : 1e-6 * scale * q / tau;

  CHECK(std::isfinite(fr.loss) && std::fabs(fr.loss - ref.loss) <= 1e-5 * std::max(1.0, std::fabs(ref.loss)) + scoreFloor)
      << what << ": loss " << fr.loss << " vs float64 " << ref.loss;
  CHECK(fr.validAnchors == ref.validAnchors) << what << ": valid anchors " << fr.validAnchors;
  for (size_t a = 0; a < per.size(); ++a)
    if (!(std::fabs(per[a] - ref.perAnchor[a]) <= 1e-5 * std::max(1.0, std::fabs(ref.perAnchor[a])) + scoreFloor)) {
      CHECK(false) << what << ": perAnchor[" << a << "] " << per[a] << " vs " << ref.perAnchor[a];
      break;
    }
  for (int64_t r = 0; r < row.batch * row.views; ++r) {
    const double through = row.spec.normalize ? 1.0 / std::max(norms[size_t(r)], 1e-12) : 1.0;
    const double floor = 1e-5 * zmax / base * through + 1e-42;
    double gmax = 0, err = 0;
    bool finite = true;
    for (int64_t k = 0; k < row.dim; ++k) {
      const size_t i = size_t(r * row.dim + k);
      finite = finite && std::isfinite(grad[i]);
      gmax = std::max(gmax, std::fabs(ref.grad[i]));
      err = std::max(err, std::fabs(double(grad[i]) - ref.grad[i]));
    }
    if (!finite || !(err <= 1e-4 * gmax + floor)) {
      CHECK(false) << what << ": gradient row " << r << " error " << err << " (max |grad| " << gmax << ")";
      break;
    }
  }
}

inline void expectEdgeError(const EdgeRow& row, const Json& j, const EdgeBackend& b) {
  using namespace supcon;
  const LossInputs in = row.inputs();
  const Json& e = j["expect"];
  const std::string what = b.name + ": " + row.name;
  const int64_t anchors = numAnchors(row.spec, in);
  std::vector<float> per(size_t(std::max<int64_t>(anchors, 1))), stats(size_t(std::max<int64_t>(statsSize(row.spec, in), 1)));
  std::vector<float> grad(std::max<size_t>(row.features.size(), 1));
  Status st = b.forward(row.spec, in, b.run, per.data(), stats.data(), nullptr);
  if (e["stage"].string == "gradient") {
    CHECK(st.isOk()) << what << ": the forward alone is valid: " << st.message();
    if (!st.isOk()) return;
    const std::vector<float> up(size_t(row.spec.reduction == Reduction::kNone ? anchors : 1), 1.0f);
    st = b.backward(row.spec, in, b.run, stats.data(), up.data(), int64_t(up.size()), grad.data(), nullptr);
  }
  CHECK(st.code() == StatusCode::kInvalidArgument) << what << ": expected an invalid-argument status, got "
                                                   << st.message();
  CHECK(edgeArgumentKey(st.argument()) == edgeArgumentKey(e["error"].string))
      << what << ": argument '" << st.argument() << "', expected '" << e["error"].string << "'";
  CHECK(std::regex_search(st.message(), std::regex(e["pattern"].string)))
      << what << ": message '" << st.message() << "' does not match /" << e["pattern"].string << "/";
  CHECK(st.message().rfind("Expected ", 0) == 0 && st.message().find(" but received ") != std::string::npos)
      << what << ": message form: " << st.message();
}

// Runs every row the C++ API can express; returns the number of rows run.
inline int runEdgeCaseTable(const EdgeBackend& b) {
  const Json table = readJsonFile(std::string(SUPCON_SOURCE_DIR) + "/test/fixtures/loss-edge-cases.json");
  int run = 0;
  for (const Json& j : table["rows"].array) {
    if (j["tsOnly"].boolean) continue;
    const EdgeRow row = edgeRow(j);
    if (j["expect"].type == Json::Type::kString) expectEdgeMatch(row, j, b);
    else expectEdgeError(row, j, b);
    ++run;
  }
  return run;
}

}  // namespace supcon_test
