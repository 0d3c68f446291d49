#pragma once
// A small fixed pool for the CPU backend: parallel_for over task indices, the calling thread
// taking part. Static assignment (task i to worker i % n) keeps results reproducible for a
// given thread count.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace didmark::detail {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  /// Run fn(worker, task) for task in [0, tasks); worker in [0, size()). Blocks until all
  /// are done; rethrows the first exception a task threw. Calls from several threads are
  /// serialized; a task must not call parallel_for on the same pool.
  void parallel_for(int64_t tasks, const std::function<void(int, int64_t)>& fn);

 private:
  void worker_loop(int worker);
  void run_share(int worker);

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int, int64_t)>* job_ = nullptr;
  int64_t tasks_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

/// Threads to use: DIDMARK_THREADS when set, else std::thread::hardware_concurrency().
int default_thread_count();

}  // namespace didmark::detail
