// One process-wide pool of worker threads, shared by the loss and the tfjs kernels.
// Size: SUPCON_NUM_THREADS if set, else the hardware thread count; setNumThreads() resizes.
#pragma once
#include <cstdint>
#include <functional>

namespace supcon {

// Runs fn(begin, end) over [0, n) split into contiguous chunks of at least `grain` items,
// on the pool's threads and the caller's. Calls from several threads are serialized.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

// Runs task(thread) once on each of `numThreads()` threads (thread in [0, numThreads())).
// Threads may synchronize with barrier(); used by schedules with dependent rounds.
void parallelRegion(const std::function<void(int thread)>& task);

// Blocks until every thread of the current parallelRegion has reached it.
void barrier();

int numThreads();
// Resizes the pool (n >= 1). Not allowed from inside a parallel call.
void setNumThreads(int n);

}  // namespace supcon
