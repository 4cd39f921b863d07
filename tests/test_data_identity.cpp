// The training data's identity: shape, count and XXH3 fingerprints of the pixels and the labels,
// each sensitive to one changed byte, and the words that name what differs between two data sets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include "vae/data_identity.hpp"

namespace vae {
namespace {

using testing::HasSubstr;
using testing_support::random_split;

TEST(DataIdentity, RecordsShapeAndCount) {
  MnistSplit split = random_split(37, 1);
  const DataIdentity id = identify_training_data(split);
  EXPECT_EQ(id.rows, 28);
  EXPECT_EQ(id.cols, 28);
  EXPECT_EQ(id.count, 37);
  EXPECT_EQ(identify_training_data(split), id);  // a pure function of the bytes
}

TEST(DataIdentity, FingerprintsAreXxh3) {
  // XXH3_64bits of no bytes, from xxHash's own test vectors: the library, not a look-alike.
  const DataIdentity empty = identify_training_data(MnistSplit{});
  EXPECT_EQ(empty.images_xxh3, 0x2D06800538D394C2ull);
  EXPECT_EQ(empty.labels_xxh3, 0x2D06800538D394C2ull);
}

TEST(DataIdentity, OneChangedPixelOrLabelChangesItsFingerprintOnly) {
  const MnistSplit split = random_split(50, 2);
  const DataIdentity id = identify_training_data(split);
  MnistSplit pixel = split;
  pixel.pixels[49 * 784 + 783] ^= 1;  // the very last byte
  EXPECT_NE(identify_training_data(pixel).images_xxh3, id.images_xxh3);
  EXPECT_EQ(identify_training_data(pixel).labels_xxh3, id.labels_xxh3);
  MnistSplit label = split;
  label.labels[0] = 9;
  EXPECT_EQ(identify_training_data(label).images_xxh3, id.images_xxh3);
  EXPECT_NE(identify_training_data(label).labels_xxh3, id.labels_xxh3);
}

TEST(DescribeDataChange, EmptyForTheSameData) {
  const DataIdentity id{28, 28, 6144, 1, 2};
  EXPECT_EQ(describe_data_change(id, id), "");
}

TEST(DescribeDataChange, NamesEachDifference) {
  const DataIdentity recorded{28, 28, 6144, 0x11, 0x22};
  DataIdentity found = recorded;
  found.count = 4096;
  found.images_xxh3 = 0x33;
  EXPECT_EQ(describe_data_change(recorded, found), "6144 training images recorded, 4096 found");
  found = recorded;
  found.rows = 16;
  found.cols = 49;
  EXPECT_EQ(describe_data_change(recorded, found), "images of 28x28 recorded, 16x49 found");
  found.count = 10;
  EXPECT_EQ(describe_data_change(recorded, found),
            "images of 28x28 recorded, 16x49 found; 6144 training images recorded, 10 found");
  found = recorded;
  found.images_xxh3 = 0x33;
  EXPECT_THAT(describe_data_change(recorded, found), HasSubstr("different pixels"));
  EXPECT_THAT(describe_data_change(recorded, found), HasSubstr("0000000000000011 recorded, 0000000000000033 found"));
  found = recorded;
  found.labels_xxh3 = 0x44;
  EXPECT_EQ(describe_data_change(recorded, found),
            "different training labels (XXH3 0000000000000022 recorded, 0000000000000044 found)");
  found.images_xxh3 = 0x33;
  EXPECT_THAT(describe_data_change(recorded, found), HasSubstr("different pixels"));
  EXPECT_THAT(describe_data_change(recorded, found), HasSubstr("; different training labels"));
}

}  // namespace
}  // namespace vae
