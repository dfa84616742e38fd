// A minimal test harness for the core's C++ tests (no dependencies, runs anywhere ctest does).
// TEST(name) { ... CHECK(cond) << "context"; } ; main() from SUPCON_TEST_MAIN runs them all,
// or only those whose name contains argv[1].
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "supcon/gemm.h"

namespace supcon_test {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  int failures = 0;
  static Registry& get() {
    static Registry r;
    return r;
  }
};

struct Register {
  Register(const char* name, std::function<void()> fn) { Registry::get().tests.emplace_back(name, std::move(fn)); }
};

// Collects a message and reports the failure when destroyed (so `CHECK(x) << "why"` works).
class Failure {
 public:
  Failure(const char* file, int line, const char* expr) {
    ss_ << file << ":" << line << ": CHECK(" << expr << ") failed ";
  }
  ~Failure() {
    std::fprintf(stderr, "  %s\n", ss_.str().c_str());
    ++Registry::get().failures;
  }
  template <typename T>
  Failure& operator<<(const T& v) {
    ss_ << v;
    return *this;
  }

 private:
  std::ostringstream ss_;
};

struct Voidify {
  void operator&(const Failure&) {}
};

inline int runAll(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  // ctest runs each binary once per SIMD path; a path this CPU lacks is reported and skipped.
  if (const char* want = std::getenv("SUPCON_REQUIRE_SIMD")) {
    if (std::strcmp(want, supcon::simdName()) != 0) {
      std::printf("skipped: this CPU has no %s path (selected %s)\n", want, supcon::simdName());
      return 0;
    }
  }
  std::printf("simd path: %s\n", supcon::simdName());
  int ran = 0, failedTests = 0;
  for (auto& [name, fn] : Registry::get().tests) {
    if (filter && !std::strstr(name.c_str(), filter)) continue;
    int before = Registry::get().failures;
    std::printf("[ RUN  ] %s\n", name.c_str());
    std::fflush(stdout);
    fn();
    ++ran;
    bool ok = Registry::get().failures == before;
    if (!ok) ++failedTests;
    std::printf("[ %s ] %s\n", ok ? " OK " : "FAIL", name.c_str());
  }
  std::printf("%d passed, %d failed\n", ran - failedTests, failedTests);
  return failedTests == 0 && ran > 0 ? 0 : 1;
}

}  // namespace supcon_test

#define TEST(name)                                                              \
  static void name();                                                          \
  static ::supcon_test::Register name##_registration(#name, &name);            \
  static void name()

#define CHECK(cond) \
  (cond) ? (void)0 : ::supcon_test::Voidify() & ::supcon_test::Failure(__FILE__, __LINE__, #cond)

#define SUPCON_TEST_MAIN \
  int main(int argc, char** argv) { return ::supcon_test::runAll(argc, argv); }
