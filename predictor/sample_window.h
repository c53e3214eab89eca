#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace prewarm {

// The most recent observations of one quantity (seconds), bounded: when full, each new sample
// replaces the oldest, so the window follows drift and its memory is fixed. Samples are floats
// (4 bytes): a 128-sample window costs about 0.5 KiB. Not thread-safe.
class SampleWindow {
 public:
  // REQUIRES: capacity > 0.
  explicit SampleWindow(int capacity);

  void Add(double seconds);

  int size() const { return static_cast<int>(samples_.size()); }
  bool empty() const { return samples_.empty(); }
  int capacity() const { return capacity_; }
  // Every sample ever added, including those the window no longer holds.
  int64_t total_added() const { return total_added_; }

  // The held samples, oldest first (so replaying them into a new window reproduces this one).
  std::vector<float> InOrder() const;

  // Heap bytes held (for memory accounting).
  size_t HeapBytes() const { return samples_.capacity() * sizeof(float); }

 private:
  int capacity_;
  int next_ = 0;  // Slot the next sample overwrites once the window is full.
  int64_t total_added_ = 0;
  std::vector<float> samples_;
};

// Whether a task ran or was skipped in its most recent runs (up to 64), for the probability that it
// runs. Not thread-safe.
class RunRecord {
 public:
  void Add(bool ran);
  int count() const { return count_; }
  // P(run), with one imaginary "ran" so that no history (or a task that always ran) gives 1 and a
  // task skipped n times in a row gives 1/(n+1).
  double RunProbability() const;

 private:
  uint64_t bits_ = 0;  // Bit i: whether the i-th most recent run ran.
  int count_ = 0;
};

}  // namespace prewarm
