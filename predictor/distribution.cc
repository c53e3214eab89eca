#include "predictor/distribution.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "predictor/check.h"

namespace prewarm {

Distribution::Distribution(std::vector<float> sorted) : sorted_(std::move(sorted)) {
  PREWARM_CHECK(!sorted_.empty(), "a distribution needs at least one sample");
  double sum = 0;
  for (float s : sorted_) sum += s;
  mean_ = sum / static_cast<double>(sorted_.size());
}

Distribution Distribution::Point(double seconds) {
  return Distribution(std::vector<float>{static_cast<float>(seconds)});
}

Distribution Distribution::FromSamples(std::vector<float> samples) {
  std::sort(samples.begin(), samples.end());
  return Distribution(std::move(samples));
}

std::span<const float> Distribution::AtLeast(double floor) const {
  auto first = std::lower_bound(sorted_.begin(), sorted_.end(), static_cast<float>(floor));
  return std::span<const float>(sorted_).subspan(static_cast<size_t>(first - sorted_.begin()));
}

double Distribution::Quantile(double q) const {
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted_.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted_.size() - 1);
  return sorted_[lo] + (sorted_[hi] - sorted_[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace prewarm
