// Linear and spherical latent paths, in double internally so long, nearly parallel latents keep
// their angle; the result is float as the models take it.
#include "vae/latent_interpolation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vae/error.hpp"

namespace vae {

std::vector<float> interpolate_latents(const std::vector<float>& a, const std::vector<float>& b, int frames,
                                       LatentPath path) {
  if (frames < 2) throw Error(fmt::format("interpolate_latents: {} frames, at least 2 needed", frames));
  if (a.size() != b.size())
    throw Error(fmt::format("interpolate_latents: latents of {} and {} values", a.size(), b.size()));
  const size_t dim = a.size();
  double norm_a = 0, norm_b = 0, dot = 0;
  for (size_t k = 0; k < dim; ++k) {
    norm_a += static_cast<double>(a[k]) * a[k];
    norm_b += static_cast<double>(b[k]) * b[k];
    dot += static_cast<double>(a[k]) * b[k];
  }
  norm_a = std::sqrt(norm_a), norm_b = std::sqrt(norm_b);
  double angle = 0, sin_angle = 0;
  if (norm_a > 0 && norm_b > 0) {
    angle = std::acos(std::clamp(dot / (norm_a * norm_b), -1.0, 1.0));
    sin_angle = std::sin(angle);
  }
  const bool spherical = path == LatentPath::kSpherical && sin_angle >= 1e-6;

  std::vector<float> z(static_cast<size_t>(frames) * dim);
  for (int f = 0; f < frames; ++f) {
    float* row = z.data() + static_cast<size_t>(f) * dim;
    const double t = static_cast<double>(f) / (frames - 1);
    for (size_t k = 0; k < dim; ++k) {
      if (f == 0 || f == frames - 1) {
        row[k] = f == 0 ? a[k] : b[k];
      } else if (spherical) {
        const double norm = (1 - t) * norm_a + t * norm_b;
        const double direction = (std::sin((1 - t) * angle) * a[k] / norm_a + std::sin(t * angle) * b[k] / norm_b) / sin_angle;
        row[k] = static_cast<float>(norm * direction);
      } else {
        row[k] = static_cast<float>((1 - t) * a[k] + t * b[k]);
      }
    }
  }
  return z;
}

}  // namespace vae
