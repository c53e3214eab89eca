#include "predictor/trend.h"

#include <algorithm>
#include <cmath>

namespace prewarm {

bool ProjectTrendToNewest(std::vector<float>& v, double min_t, int min_samples) {
  const int n = static_cast<int>(v.size());
  if (n < std::max(3, min_samples)) return false;
  double mean_x = (n - 1) / 2.0, mean_y = 0;
  for (float y : v) mean_y += y;
  mean_y /= n;
  double sxx = 0, sxy = 0;
  for (int i = 0; i < n; ++i) {
    sxx += (i - mean_x) * (i - mean_x);
    sxy += (i - mean_x) * (v[i] - mean_y);
  }
  const double slope = sxy / sxx;
  double residual = 0;
  for (int i = 0; i < n; ++i) {
    const double e = v[i] - (mean_y + slope * (i - mean_x));
    residual += e * e;
  }
  const double standard_error = std::sqrt(residual / (n - 2) / sxx);
  // A perfect line has no error: any slope is clear then.
  if (slope == 0 || (standard_error > 0 && std::abs(slope) / standard_error < min_t)) return false;
  for (int i = 0; i < n; ++i) {
    v[i] = static_cast<float>(std::max(0.0, v[i] + slope * (n - 1 - i)));
  }
  return true;
}

}  // namespace prewarm
