// Paths between two latents for interpolation strips: straight lines, or great-circle arcs that keep
// the walk at the prior's typical radius instead of cutting through its low-norm middle.
#pragma once

#include <vector>

namespace vae {

enum class LatentPath { kLinear, kSpherical };

// frames latents [frames, dim] from a [dim] to b [dim] at t = f / (frames - 1); frame 0 is a and the
// last frame is b, exactly (copied).
// - kLinear: (1 - t) a + t b.
// - kSpherical: the direction moves along the great circle from a / |a| to b / |b| at constant
//   angular speed, slerp(t) = (sin((1 - t) W) a^ + sin(t W) b^) / sin W with W the angle between
//   them, and the norm is linear in t: |z(t)| = (1 - t) |a| + t |b|. Where the direction is not
//   defined (a zero vector) or the arc is not unique (sin W < 1e-6: parallel or opposite), it is
//   the linear path.
// Throws vae::Error when frames < 2 or a and b differ in size.
std::vector<float> interpolate_latents(const std::vector<float>& a, const std::vector<float>& b, int frames,
                                       LatentPath path);

}  // namespace vae
