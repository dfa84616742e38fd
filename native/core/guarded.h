// Entry points of the core never let a C++ exception cross the API: guarded() runs the body
// (returning Status or void) and turns std::bad_alloc and other exceptions into a Status.
#pragma once
#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "supcon/status.h"

namespace supcon {

template <typename F>
Status guarded(const char* what, F&& body) {
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      return Status::ok();
    } else {
      return body();
    }
  } catch (const std::bad_alloc&) {
    return Status::outOfMemory(std::string(what) + ": out of host memory");
  } catch (const std::exception& e) {
    return Status::internal(std::string(what) + ": " + e.what());
  }
}

}  // namespace supcon
