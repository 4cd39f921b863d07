// mnist_style_input against hand-made drawings whose 28x28 result is worked out by hand: the ink's
// box scaled to 20 on its longer side by area averaging, then shifted whole pixels so its centre of
// mass sits at the field's centre (14, 14) in pixel-edge coordinates.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "vae/error.hpp"
#include "vae/mnist_style.hpp"

namespace vae {
namespace {

constexpr int kSide = 28;

std::vector<float> canvas(int width, int height) { return std::vector<float>(static_cast<size_t>(width) * height, 0.0f); }
void set(std::vector<float>& c, int width, int row, int col, float v) { c[static_cast<size_t>(row) * width + col] = v; }

// The 28x28 field with value v on rows [top, top + h) and columns [left, left + w).
std::vector<float> block(int top, int left, int h, int w, float v) {
  std::vector<float> out(kSide * kSide, 0.0f);
  for (int r = top; r < top + h; ++r)
    for (int c = left; c < left + w; ++c) out[r * kSide + c] = v;
  return out;
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6f) << "row " << i / kSide << ", column " << i % kSide;
}

TEST(MnistStyle, EmptyCanvasIsAllZeros) {
  EXPECT_EQ(mnist_style_input(50, 30, canvas(50, 30)), std::vector<float>(kSide * kSide, 0.0f));
}

// One pixel is a 1x1 box: scaled to 20x20 of its value, centre of mass (10, 10), shifted by 4.
TEST(MnistStyle, ASingleBrightPixelBecomesTheCentredTwentySquare) {
  std::vector<float> c = canvas(10, 8);
  set(c, 10, 5, 3, 0.75f);
  expect_near(mnist_style_input(10, 8, c), block(4, 4, 20, 20, 0.75f));
}

// A 4 wide, 2 tall rectangle scales by 5 to 20 x 10; centring puts it at columns 4..23, rows 9..18.
TEST(MnistStyle, AFilledRectangleScalesItsLongerSideToTwentyAndCentres) {
  std::vector<float> c = canvas(30, 30);
  for (int r = 20; r < 22; ++r)
    for (int col = 2; col < 6; ++col) set(c, 30, r, col, 1.0f);
  expect_near(mnist_style_input(30, 30, c), block(9, 4, 10, 20, 1.0f));
}

// 1 wide, 10 tall: scale 2, so 2 x 20 at columns 13..14; the wide stroke is its transpose.
TEST(MnistStyle, TallAndWideStrokesKeepTheirAspect) {
  std::vector<float> tall = canvas(40, 40), wide = canvas(40, 40);
  for (int i = 0; i < 10; ++i) {
    set(tall, 40, 25 + i, 33, 1.0f);
    set(wide, 40, 3, 5 + i, 1.0f);
  }
  expect_near(mnist_style_input(40, 40, tall), block(4, 13, 20, 2, 1.0f));
  expect_near(mnist_style_input(40, 40, wide), block(13, 4, 2, 20, 1.0f));
}

// Pixels 1.0 and 0.5 side by side: a 2x1 box, scale 10, columns 0..9 at 1.0 and 10..19 at 0.5.
// Centre of mass x = (10 * 5 + 5 * 15) / 15 = 8.33, so the shift is round(5.67) = 6 (not the box's 4):
// columns 6..15 at 1.0, 16..25 at 0.5; rows 9..18.
TEST(MnistStyle, OffCentreMassMovesToTheCentre) {
  std::vector<float> c = canvas(5, 5);
  set(c, 5, 1, 2, 1.0f);
  set(c, 5, 1, 3, 0.5f);
  std::vector<float> want = block(9, 6, 10, 10, 1.0f);
  const std::vector<float> half = block(9, 16, 10, 10, 0.5f);
  for (size_t i = 0; i < want.size(); ++i) want[i] += half[i];
  expect_near(mnist_style_input(5, 5, c), want);
}

// Columns 1.0, 0.5, 1.0 in three rows: scaled 20/3, each output column covers 0.15 source columns.
// Columns 0..5 fall in the first (1.0), column 6 covers [0.9, 1.05): (0.1 * 1 + 0.05 * 0.5) / 0.15
// = 5/6, columns 7..12 the middle (0.5), column 13 covers [1.95, 2.1): 5/6, columns 14..19 1.0.
// Symmetric, so the 20x20 box lands at rows and columns 4..23.
TEST(MnistStyle, AreaAveragingWeighsPartlyCoveredPixels) {
  std::vector<float> c = canvas(3, 3);
  for (int r = 0; r < 3; ++r) {
    set(c, 3, r, 0, 1.0f);
    set(c, 3, r, 1, 0.5f);
    set(c, 3, r, 2, 1.0f);
  }
  std::vector<float> want(kSide * kSide, 0.0f);
  const float profile[20] = {1, 1, 1, 1, 1, 1, 5.0f / 6, .5f, .5f, .5f, .5f, .5f, .5f, 5.0f / 6, 1, 1, 1, 1, 1, 1};
  for (int r = 4; r < 24; ++r)
    for (int col = 4; col < 24; ++col) want[r * kSide + col] = profile[col - 4];
  expect_near(mnist_style_input(3, 3, c), want);
}

// Downscaling: a 40x40 checkerboard averages to 0.5 in every 2x2 footprint.
TEST(MnistStyle, DownscalingAveragesTheFootprint) {
  std::vector<float> c = canvas(40, 40);
  for (int r = 0; r < 40; ++r)
    for (int col = 0; col < 40; ++col) set(c, 40, r, col, (r + col) % 2 == 0 ? 1.0f : 0.0f);
  expect_near(mnist_style_input(40, 40, c), block(4, 4, 20, 20, 0.5f));
}

// Whatever the drawing, the result's centre of mass is within half a pixel of (14, 14).
TEST(MnistStyle, CentreOfMassEndsWithinHalfAPixelOfTheCentre) {
  const int w = 37, h = 23;
  std::vector<float> c = canvas(w, h);
  for (int i = 0; i < 15; ++i) set(c, w, 2 + i, 30 - i, 1.0f);  // a diagonal stroke
  for (int i = 0; i < 6; ++i) set(c, w, 20, 3 + i, 0.4f);        // and a faint tail far away
  const std::vector<float> out = mnist_style_input(w, h, c);
  double mass = 0, x = 0, y = 0;
  for (int r = 0; r < kSide; ++r)
    for (int col = 0; col < kSide; ++col) {
      const double v = out[r * kSide + col];
      mass += v, x += v * (col + 0.5), y += v * (r + 0.5);
    }
  ASSERT_GT(mass, 0);
  EXPECT_LE(std::abs(x / mass - 14.0), 0.5);
  EXPECT_LE(std::abs(y / mass - 14.0), 0.5);
}

TEST(MnistStyle, Uint8CanvasReadsAsValueOver255) {
  std::vector<uint8_t> bytes(6 * 4, 0);
  std::vector<float> unit(6 * 4, 0.0f);
  for (const auto [i, v] : {std::pair{7, 255}, std::pair{8, 51}, std::pair{14, 102}}) {
    bytes[i] = static_cast<uint8_t>(v);
    unit[i] = static_cast<float>(v) / 255.0f;
  }
  EXPECT_EQ(mnist_style_input(6, 4, bytes), mnist_style_input(6, 4, unit));
}

TEST(MnistStyle, BadCanvasesAreErrors) {
  EXPECT_THROW(mnist_style_input(0, 5, std::vector<float>{}), Error);
  EXPECT_THROW(mnist_style_input(3, 3, canvas(3, 2)), Error);
  for (const float bad : {-0.1f, 1.5f, std::nanf("")}) {
    std::vector<float> c = canvas(3, 3);
    set(c, 3, 1, 1, bad);
    EXPECT_THROW(mnist_style_input(3, 3, c), Error) << bad;
  }
}

}  // namespace
}  // namespace vae
