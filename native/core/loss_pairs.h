// The positive relation of the loss (docs/loss.md, "Positives"), in one definition shared by the
// CPU tile epilogues (loss_cpu.cpp) and the CUDA kernels (native/cuda/loss_kernels.cuh): for an
// anchor row i and a contrast row j, whether j is a positive of i, with which weight, or neither
// (a positive the cap drops). Everything is indexed by contrast row (features in memory order,
// then the extra rows); PreparedLoss (loss_internal.h) builds the arrays once per call.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define SUPCON_HOST_DEVICE __host__ __device__
#else
#define SUPCON_HOST_DEVICE
#endif

namespace supcon {
namespace detail {

// A view of the relation's arrays (host or device pointers, as the user of the view needs).
struct PairRelation {
  // Class ids [contrastRows] (labels, or the sample for SimCLR; -1 matches nothing), used when
  // words == 0. Otherwise label sets: bits [contrastRows][words], setSize [contrastRows].
  const int32_t* classes = nullptr;
  const uint64_t* bits = nullptr;
  const int32_t* setSize = nullptr;
  int32_t words = 0;
  int32_t jaccard = 0;
  // positivesCap: sample [contrastRows] (the sample a row is a view of; extra rows are their own),
  // key [contrastRows] (the row's place in the seeded order), threshold [contrastRows] (of anchor
  // rows: the key of the last positive the cap keeps; INT32_MAX when it keeps them all).
  int32_t capped = 0;
  const int32_t* sample = nullptr;
  const int32_t* key = nullptr;
  const int32_t* threshold = nullptr;
};

SUPCON_HOST_DEVICE inline int popcount64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x);
#else
  return __builtin_popcountll(x);
#endif
}

// Weight of contrast row j as a positive of anchor row i (i != j): > 0 a positive of that
// weight (1, or the Jaccard overlap of the two label sets), 0 a negative (no shared label), and
// -1 a positive the cap drops (neither a positive nor in any denominator).
SUPCON_HOST_DEVICE inline float pairWeight(const PairRelation& r, int64_t i, int64_t j) {
  int32_t shared = 1, either = 1;
  if (r.words == 0) {
    if (r.classes[i] != r.classes[j] || r.classes[i] < 0) return 0.0f;
  } else {
    const uint64_t* a = r.bits + i * r.words;
    const uint64_t* b = r.bits + j * r.words;
    shared = 0;
    for (int32_t w = 0; w < r.words; ++w) shared += popcount64(a[w] & b[w]);
    if (shared == 0) return 0.0f;
    either = r.setSize[i] + r.setSize[j] - shared;
  }
  if (r.capped && r.sample[i] != r.sample[j] && r.key[j] > r.threshold[i]) return -1.0f;
  return r.jaccard ? float(shared) / float(either) : 1.0f;
}

}  // namespace detail
}  // namespace supcon
