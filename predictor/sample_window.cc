#include "predictor/sample_window.h"

#include <algorithm>
#include <bit>

#include "predictor/check.h"

namespace prewarm {

SampleWindow::SampleWindow(int capacity) : capacity_(capacity) {
  PREWARM_CHECK(capacity > 0, "a window holds at least one sample");
}

void SampleWindow::Add(double seconds) {
  ++total_added_;
  if (size() < capacity_) {
    samples_.push_back(static_cast<float>(seconds));
    return;
  }
  samples_[next_] = static_cast<float>(seconds);
  next_ = (next_ + 1) % capacity_;
}

std::vector<float> SampleWindow::InOrder() const {
  std::vector<float> out;
  out.reserve(samples_.size());
  out.insert(out.end(), samples_.begin() + next_, samples_.end());
  out.insert(out.end(), samples_.begin(), samples_.begin() + next_);
  return out;
}

void RunRecord::Add(bool ran) {
  bits_ = (bits_ << 1) | (ran ? 1 : 0);
  count_ = std::min(count_ + 1, 64);
}

double RunRecord::RunProbability() const {
  const uint64_t mask = count_ == 64 ? ~uint64_t{0} : ((uint64_t{1} << count_) - 1);
  const int ran = std::popcount(bits_ & mask);
  return (ran + 1.0) / (count_ + 1.0);
}

}  // namespace prewarm
