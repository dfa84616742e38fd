// The few MPI collectives data-parallel training needs (docs/distributed.md), on MPI_COMM_WORLD,
// as a plain C++ API with no MPI or Node types in it. Built only when CMake finds MPI
// (SUPCON_MPI=AUTO|ON|OFF); the N-API binding (native/napi/mpi_binding.cpp) is its one caller.
//
// Rules:
//  - one thread calls (MPI_THREAD_FUNNELED): the binding calls from Node's main thread;
//  - every call returns a Status: MPI errors come back as kCommunication with MPI's own text
//    (the communicator's error handler is MPI_ERRORS_RETURN), never an abort;
//  - a collective waits for the other ranks by polling its non-blocking form with a growing
//    sleep (up to 1 ms), not by spinning, so a rank waiting while rank 0 alone checkpoints or
//    evaluates leaves the CPU to it;
//  - counts are elements, each below 2^31 (MPI's int counts).
#pragma once
#include <cstdint>
#include <string>

#include "supcon/status.h"

namespace supcon {
namespace mpi {

enum class Dtype { kFloat32, kFloat64, kInt32, kUint8 };

// Initializes MPI once (MPI_Init_thread, FUNNELED) unless something else already did, and makes
// errors on MPI_COMM_WORLD return codes. Idempotent; fails after finalize().
Status init();
bool initialized();
// Rank and size of MPI_COMM_WORLD (0 and 1 before init()).
int rank();
int size();
// MPI_Get_library_version, one line.
std::string libraryVersion();

// data[0..count) = the elementwise sum over ranks, in place. kUint8 is refused.
Status allreduceSum(void* data, int64_t count, Dtype type);
// recv[r * count + i] = rank r's send[i] (every rank sends count elements).
Status allgather(const void* send, int64_t count, void* recv, Dtype type);
// recv = rank 0's send[0..counts[0]), then rank 1's, ...; counts[size()] per rank, send holds
// counts[rank()] elements.
Status allgatherv(const void* send, void* recv, const int64_t* counts, Dtype type);
// recv[0..counts[rank()]) = the sum over ranks of their send[offset_r ..), offset_r = the sum of
// counts before rank r: each rank gets its own block of the sum (MPI_Reduce_scatter).
Status reduceScatterSum(const void* send, void* recv, const int64_t* counts, Dtype type);
// data[0..count) = root's data[0..count) on every rank.
Status broadcast(void* data, int64_t count, int root, Dtype type);
Status barrier();
// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job (the launcher reports it).
void abort(int code);
// MPI_Finalize (collective); nothing may be called after it.
Status finalize();
bool finalized();

}  // namespace mpi
}  // namespace supcon
