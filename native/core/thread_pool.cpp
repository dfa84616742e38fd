// A small fork-join pool: persistent workers, one job at a time (callers are serialized by a
// mutex), a generation counter to start a job and a counter to join it, and a reusable
// sense-reversing barrier for schedules with dependent rounds.
#include "supcon/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace supcon {
namespace {

int defaultThreadCount() {
  if (const char* env = std::getenv("SUPCON_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 256);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min(hw, 256u));
}

class Pool {
 public:
  Pool() { start(defaultThreadCount()); }
  ~Pool() { stop(); }

  int size() const { return size_.load(); }

  void resize(int n) {
    std::lock_guard<std::mutex> g(callMutex_);
    if (n == size_) return;
    stop();
    start(n);
  }

  void run(const std::function<void(int)>& task) {
    if (inRegion_) throw std::logic_error("supcon: nested parallel regions are not supported");
    std::lock_guard<std::mutex> g(callMutex_);
    if (size_ == 1) {
      inRegion_ = true;
      try {
        task(0);
      } catch (...) {
        inRegion_ = false;
        throw;
      }
      inRegion_ = false;
      return;
    }
    error_ = nullptr;
    {
      std::lock_guard<std::mutex> lk(m_);
      task_ = &task;
      pending_ = size_ - 1;
      ++generation_;
    }
    cv_.notify_all();
    runGuarded(task, 0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  void barrier() {
    if (size_ == 1) return;
    std::unique_lock<std::mutex> lk(barrierMutex_);
    int gen = barrierGeneration_;
    if (++barrierCount_ == size_) {
      barrierCount_ = 0;
      ++barrierGeneration_;
      barrierCv_.notify_all();
    } else {
      barrierCv_.wait(lk, [&] { return barrierGeneration_ != gen; });
    }
  }

  static bool inRegion() { return inRegion_; }

 private:
  void start(int n) {
    size_ = std::max(1, n);
    quit_ = false;
    const uint64_t gen = generation_;  // workers start waiting for the next job, whenever they run
    for (int t = 1; t < size_; ++t) workers_.emplace_back([this, t, gen] { workerLoop(t, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  // Exceptions (std::bad_alloc in a worker) are kept and rethrown on the calling thread.
  // A task that throws must not be waiting in barrier(): tasks allocate before their rounds.
  void runGuarded(const std::function<void(int)>& task, int id) {
    inRegion_ = true;
    try {
      task(id);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
    inRegion_ = false;
  }

  void workerLoop(int id, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* task;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return generation_ != seen || quit_; });
        if (quit_) return;
        seen = generation_;
        task = task_;
      }
      runGuarded(*task, id);
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex callMutex_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* task_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  std::atomic<int> size_{1};
  std::exception_ptr error_;
  bool quit_ = false;
  static thread_local bool inRegion_;

  std::mutex barrierMutex_;
  std::condition_variable barrierCv_;
  int barrierCount_ = 0;
  int barrierGeneration_ = 0;
};

thread_local bool Pool::inRegion_ = false;

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: no join at static destruction time
  return *p;
}

}  // namespace

int numThreads() { return pool().size(); }

void setNumThreads(int n) {
  if (n < 1) throw std::invalid_argument("thread count must be >= 1");
  pool().resize(n);
}

void parallelRegion(const std::function<void(int)>& task) { pool().run(task); }

void barrier() { pool().barrier(); }

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int threads = Pool::inRegion() ? 1 : numThreads();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1 || Pool::inRegion()) {  // nested calls run inline on the calling thread
    fn(0, n);
    return;
  }
  // Dynamic chunking: small pieces handed out by an atomic counter balance uneven work.
  int64_t pieces = std::min<int64_t>((n + grain - 1) / grain, chunks * 8);
  int64_t step = (n + pieces - 1) / pieces;
  std::atomic<int64_t> next{0};
  parallelRegion([&](int) {
    for (;;) {
      int64_t b = next.fetch_add(step);
      if (b >= n) break;
      fn(b, std::min(n, b + step));
    }
  });
}

}  // namespace supcon
