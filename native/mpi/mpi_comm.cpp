// MPI collectives for data-parallel training (mpi_comm.h).
#include "mpi_comm.h"

#include <dlfcn.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>
#include <vector>

namespace supcon {
namespace mpi {
namespace {

bool gInitializedHere = false;
bool gFinalized = false;

MPI_Datatype mpiType(Dtype t) {
  switch (t) {
    case Dtype::kFloat32: return MPI_FLOAT;
    case Dtype::kFloat64: return MPI_DOUBLE;
    case Dtype::kInt32: return MPI_INT;
    default: return MPI_BYTE;
  }
}

Status fromCode(int code, const char* what) {
  if (code == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  return Status::communication(std::string(what) + " failed: " + (length > 0 ? std::string(text, length) : "MPI error " + std::to_string(code)));
}

Status ready(const char* what) {
  if (gFinalized) return Status::communication(std::string(what) + ": MPI has been finalized");
  int on = 0;
  MPI_Initialized(&on);
  if (!on) return Status::communication(std::string(what) + ": MPI is not initialized (call init first)");
  return Status::ok();
}

Status checkCount(int64_t count, const char* what) {
  if (count < 0 || count > INT_MAX)
    return Status::invalidArgument(std::string(what) + " count", "a count in [0, 2^31)", std::to_string(count));
  return Status::ok();
}

// Waits for a non-blocking collective. Without a progress thread a large collective (the
// gradients' allreduce: its segments are pipelined) moves only while the ranks call MPI_Test, so
// the first milliseconds poll often: back to back for 1 ms, then every 50 us until 20 ms; a rank
// kept waiting longer (rank 0 alone checkpointing or evaluating) then sleeps up to 1 ms between
// polls and costs next to no CPU. (With sleeps of up to 1 ms from the start, the 358 KB
// allreduce of ResNet-8's gradients between two ranks took 12-16 ms in three of four noisy
// measurements; with this polling, 0.1 ms when both ranks ran at once: docs/distributed.md.)
Status wait(MPI_Request* request, const char* what) {
  using Clock = std::chrono::steady_clock;
  using std::chrono::microseconds;
  const auto start = Clock::now();
  auto pause = microseconds(50);
  for (;;) {
    int done = 0;
    const int code = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (code != MPI_SUCCESS) return fromCode(code, what);
    if (done) return Status::ok();
    const auto waited = Clock::now() - start;
    if (waited < microseconds(1000)) continue;
    std::this_thread::sleep_for(pause);
    if (waited > microseconds(20000)) pause = std::min(pause * 2, microseconds(1000));
  }
}

// Open MPI loads its components with dlopen and expects libmpi's symbols to be global; Node
// loads this addon, and with it libmpi, RTLD_LOCAL. Re-opening libmpi RTLD_GLOBAL (the library
// is already loaded: RTLD_NOLOAD) makes its symbols visible to the components, as mpi4py does.
void promoteLibraryToGlobal() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) != 0 && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

}  // namespace

Status init() {
  if (gFinalized) return Status::communication("MPI has been finalized in this process");
  int on = 0;
  MPI_Initialized(&on);
  if (!on) {
    promoteLibraryToGlobal();
    int provided = 0;
    const int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (code != MPI_SUCCESS) return fromCode(code, "MPI_Init_thread");
    gInitializedHere = true;
  }
  return fromCode(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
}

bool initialized() {
  int on = 0;
  MPI_Initialized(&on);
  return on && !gFinalized;
}

bool finalized() { return gFinalized; }

int rank() {
  int r = 0;
  if (initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int size() {
  int s = 1;
  if (initialized()) MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

std::string libraryVersion() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "";
  std::string v(text, static_cast<size_t>(std::max(0, length)));
  const size_t end = v.find_first_of("\r\n");
  if (end != std::string::npos) v.resize(end);
  while (!v.empty() && (v.back() == ' ' || v.back() == ',' || v.back() == '\0')) v.pop_back();
  return v;
}

Status allreduceSum(void* data, int64_t count, Dtype type) {
  SUPCON_RETURN_IF_ERROR(ready("allreduce"));
  SUPCON_RETURN_IF_ERROR(checkCount(count, "allreduce"));
  if (type == Dtype::kUint8) return Status::invalidArgument("allreduce data", "float32, float64 or int32 values", "uint8");
  MPI_Request request;
  const int code = MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), mpiType(type), MPI_SUM, MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Iallreduce");
  return wait(&request, "MPI_Iallreduce");
}

Status allgather(const void* send, int64_t count, void* recv, Dtype type) {
  SUPCON_RETURN_IF_ERROR(ready("allgather"));
  SUPCON_RETURN_IF_ERROR(checkCount(count, "allgather"));
  SUPCON_RETURN_IF_ERROR(checkCount(count * size(), "allgather total"));
  MPI_Request request;
  const MPI_Datatype t = mpiType(type);
  const int code = MPI_Iallgather(send, static_cast<int>(count), t, recv, static_cast<int>(count), t, MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Iallgather");
  return wait(&request, "MPI_Iallgather");
}

// Per-rank int counts and displacements of a varying-count collective.
Status layout(const int64_t* counts, std::vector<int>* c, std::vector<int>* displs, const char* what) {
  const int n = size();
  c->resize(n);
  displs->resize(n);
  int64_t offset = 0;
  for (int r = 0; r < n; ++r) {
    SUPCON_RETURN_IF_ERROR(checkCount(counts[r], what));
    (*c)[r] = static_cast<int>(counts[r]);
    (*displs)[r] = static_cast<int>(offset);
    offset += counts[r];
    SUPCON_RETURN_IF_ERROR(checkCount(offset, what));
  }
  return Status::ok();
}

Status allgatherv(const void* send, void* recv, const int64_t* counts, Dtype type) {
  SUPCON_RETURN_IF_ERROR(ready("allgatherv"));
  std::vector<int> c, displs;
  SUPCON_RETURN_IF_ERROR(layout(counts, &c, &displs, "allgatherv"));
  const MPI_Datatype t = mpiType(type);
  MPI_Request request;
  const int code = MPI_Iallgatherv(send, c[rank()], t, recv, c.data(), displs.data(), t, MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Iallgatherv");
  return wait(&request, "MPI_Iallgatherv");
}

Status reduceScatterSum(const void* send, void* recv, const int64_t* counts, Dtype type) {
  SUPCON_RETURN_IF_ERROR(ready("reduceScatter"));
  if (type == Dtype::kUint8) return Status::invalidArgument("reduceScatter data", "float32, float64 or int32 values", "uint8");
  std::vector<int> c, displs;
  SUPCON_RETURN_IF_ERROR(layout(counts, &c, &displs, "reduceScatter"));
  MPI_Request request;
  const int code = MPI_Ireduce_scatter(send, recv, c.data(), mpiType(type), MPI_SUM, MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Ireduce_scatter");
  return wait(&request, "MPI_Ireduce_scatter");
}

Status broadcast(void* data, int64_t count, int root, Dtype type) {
  SUPCON_RETURN_IF_ERROR(ready("broadcast"));
  SUPCON_RETURN_IF_ERROR(checkCount(count, "broadcast"));
  if (root < 0 || root >= size())
    return Status::invalidArgument("root", "a rank in [0, " + std::to_string(size()) + ")", std::to_string(root));
  MPI_Request request;
  const int code = MPI_Ibcast(data, static_cast<int>(count), mpiType(type), root, MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Ibcast");
  return wait(&request, "MPI_Ibcast");
}

Status barrier() {
  SUPCON_RETURN_IF_ERROR(ready("barrier"));
  MPI_Request request;
  const int code = MPI_Ibarrier(MPI_COMM_WORLD, &request);
  if (code != MPI_SUCCESS) return fromCode(code, "MPI_Ibarrier");
  return wait(&request, "MPI_Ibarrier");
}

void abort(int code) {
  if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
}

Status finalize() {
  if (gFinalized) return Status::ok();
  int on = 0;
  MPI_Initialized(&on);
  gFinalized = true;
  if (!on || !gInitializedHere) return Status::ok();
  return fromCode(MPI_Finalize(), "MPI_Finalize");
}

}  // namespace mpi
}  // namespace supcon
