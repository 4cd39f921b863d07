// Drawings turned into model inputs the way the MNIST digits were made (LeCun et al.): the ink's
// bounding box scaled, aspect kept, to fit 20x20, then placed in 28x28 with its centre of mass at the
// centre. The playground's canvas goes through this so a drawing looks like what the model saw.
#pragma once

#include <cstdint>
#include <vector>

namespace vae {

inline constexpr int kMnistSide = 28;  // the output's rows and columns
inline constexpr int kMnistBox = 20;   // the longer side of the scaled ink

// A canvas of width x height values (row-major, ink bright on dark, on [0, 1]) to 28 x 28 values on
// [0, 1] (row-major). Ink is every value > 0; an empty canvas gives all zeros.
// - Scaling: the bounding box (w x h) becomes round(w * s) x round(h * s) pixels (at least 1) with
//   s = 20 / max(w, h), by area averaging: each output pixel is the mean of the canvas over its
//   footprint, fractional pixels weighted by the part covered (exact for up- and down-scaling).
// - Centring: in coordinates where pixel (r, c) covers [c, c + 1) x [r, r + 1), the scaled image's
//   centre of mass goes to (14, 14), the field's centre, by a whole-pixel shift: 14 - com rounded,
//   halves up, so no second resampling blurs the digit. Ink shifted past the field's edge is cut.
// Throws vae::Error for a size below 1, a canvas of another length, or a value outside [0, 1] (NaN
// included).
std::vector<float> mnist_style_input(int width, int height, const std::vector<float>& canvas);

// The same for 8-bit canvases, value v read as v / 255.
std::vector<float> mnist_style_input(int width, int height, const std::vector<uint8_t>& canvas);

}  // namespace vae
