// MNIST-style preparation of a drawing: crop to the ink, area-average into the 20x20 box, shift the
// centre of mass to the centre of 28x28. Separable: the box filter is one weight matrix per axis.
#include "vae/mnist_style.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "vae/error.hpp"

namespace vae {
namespace {

// weights[t * from + s]: the share of output pixel t's footprint [t * from / to, (t + 1) * from / to)
// that source pixel s covers; each row sums to 1.
std::vector<double> area_weights(int from, int to) {
  std::vector<double> weights(static_cast<size_t>(from) * to, 0.0);
  const double step = static_cast<double>(from) / to;
  for (int t = 0; t < to; ++t) {
    const double lo = t * step, hi = (t + 1) * step;
    for (int s = static_cast<int>(std::floor(lo)); s < from && s < hi; ++s) {
      const double overlap = std::min<double>(hi, s + 1) - std::max<double>(lo, s);
      if (overlap > 0) weights[static_cast<size_t>(t) * from + s] = overlap / step;
    }
  }
  return weights;
}

// The whole-pixel shift that moves a centre of mass at `com` to the field's centre.
int centring_shift(double com) { return static_cast<int>(std::floor(kMnistSide / 2.0 - com + 0.5)); }

}  // namespace

std::vector<float> mnist_style_input(int width, int height, const std::vector<float>& canvas) {
  if (width < 1 || height < 1) throw Error(fmt::format("mnist_style_input: canvas {}x{} is empty", width, height));
  if (canvas.size() != static_cast<size_t>(width) * height)
    throw Error(fmt::format("mnist_style_input: {} values for a {}x{} canvas", canvas.size(), width, height));
  int left = width, right = -1, top = height, bottom = -1;
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c) {
      const float v = canvas[static_cast<size_t>(r) * width + c];
      if (!(v >= 0.0f && v <= 1.0f))
        throw Error(fmt::format("mnist_style_input: value {} at row {}, column {} is outside [0, 1]", v, r, c));
      if (v > 0.0f) {
        left = std::min(left, c), right = std::max(right, c);
        top = std::min(top, r), bottom = std::max(bottom, r);
      }
    }
  std::vector<float> out(kMnistSide * kMnistSide, 0.0f);
  if (right < 0) return out;

  const int w = right - left + 1, h = bottom - top + 1;
  const double scale = static_cast<double>(kMnistBox) / std::max(w, h);
  const int ow = std::max(1, static_cast<int>(std::lround(w * scale)));
  const int oh = std::max(1, static_cast<int>(std::lround(h * scale)));
  const std::vector<double> wx = area_weights(w, ow), wy = area_weights(h, oh);

  // Columns first (h x ow), then rows (oh x ow).
  std::vector<double> narrow(static_cast<size_t>(h) * ow, 0.0), box(static_cast<size_t>(oh) * ow, 0.0);
  for (int r = 0; r < h; ++r)
    for (int t = 0; t < ow; ++t) {
      double sum = 0;
      for (int c = 0; c < w; ++c) sum += wx[static_cast<size_t>(t) * w + c] * canvas[static_cast<size_t>(top + r) * width + left + c];
      narrow[static_cast<size_t>(r) * ow + t] = sum;
    }
  double mass = 0, moment_x = 0, moment_y = 0;
  for (int t = 0; t < oh; ++t)
    for (int c = 0; c < ow; ++c) {
      double sum = 0;
      for (int r = 0; r < h; ++r) sum += wy[static_cast<size_t>(t) * h + r] * narrow[static_cast<size_t>(r) * ow + c];
      box[static_cast<size_t>(t) * ow + c] = sum;
      mass += sum, moment_x += sum * (c + 0.5), moment_y += sum * (t + 0.5);
    }

  const int dx = centring_shift(moment_x / mass), dy = centring_shift(moment_y / mass);
  for (int t = 0; t < oh; ++t)
    for (int c = 0; c < ow; ++c) {
      const int r = t + dy, col = c + dx;
      if (r < 0 || r >= kMnistSide || col < 0 || col >= kMnistSide) continue;
      out[static_cast<size_t>(r) * kMnistSide + col] =
          std::clamp(static_cast<float>(box[static_cast<size_t>(t) * ow + c]), 0.0f, 1.0f);
    }
  return out;
}

std::vector<float> mnist_style_input(int width, int height, const std::vector<uint8_t>& canvas) {
  std::vector<float> unit(canvas.size());
  for (size_t i = 0; i < canvas.size(); ++i) unit[i] = static_cast<float>(canvas[i]) / 255.0f;
  return mnist_style_input(width, height, unit);
}

}  // namespace vae
