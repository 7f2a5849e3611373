// TensorBoard event files: the TFRecord framing (masked CRC32C known values), a file read back record
// by record with its Event protos (version record, steps, tags, values), and a flipped byte refused.
#include "trainer/tensorboard.h"

#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/file_util.h"
#include "gtest/gtest.h"
#include "trainer/tensorboard.pb.h"

namespace moe::trainer {
namespace {

TEST(TensorBoard, MaskedCrc32c) {
  EXPECT_EQ(MaskedCrc32c("", 0), 0xa282ead8u);  // CRC32C("") = 0
  const uint32_t crc = 0xe3069283u;               // CRC32C("123456789"), the standard check value
  EXPECT_EQ(MaskedCrc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, WritesEventsTensorBoardCanRead) {
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/tb";
  std::filesystem::create_directories(dir);
  std::string path;
  {
    auto writer = TensorBoardWriter::Open(dir);
    ASSERT_TRUE(writer.ok()) << writer.status();
    path = writer->path();
    EXPECT_NE(path.find("/events.out.tfevents."), std::string::npos) << path;
    for (int64_t step = 1; step <= 3; ++step) {
      ASSERT_TRUE(writer->WriteScalars(step, {{"loss", 5.0 - step}, {"lr", 1e-3 * step}}).ok());
    }
  }
  auto records = ReadTfRecords(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  tensorboard::Event event;
  ASSERT_TRUE(event.ParseFromString((*records)[0]));
  EXPECT_EQ(event.file_version(), "brain.Event:2");
  EXPECT_GT(event.wall_time(), 1.6e9);
  for (int64_t step = 1; step <= 3; ++step) {
    ASSERT_TRUE(event.ParseFromString((*records)[step]));
    EXPECT_EQ(event.step(), step);
    ASSERT_EQ(event.summary().value_size(), 2);
    EXPECT_EQ(event.summary().value(0).tag(), "loss");
    EXPECT_FLOAT_EQ(event.summary().value(0).simple_value(), 5.0f - step);
    EXPECT_EQ(event.summary().value(1).tag(), "lr");
    EXPECT_FLOAT_EQ(event.summary().value(1).simple_value(), 1e-3f * step);
  }
  // One flipped byte in the second record's data is caught by its CRC.
  auto bytes = ReadFileToString(path);
  ASSERT_TRUE(bytes.ok());
  std::string damaged = *bytes;
  const size_t second = 12 + (*records)[0].size() + 4;
  damaged[second + 12 + 3] ^= 0x10;
  ASSERT_TRUE(WriteFileAtomically(path, damaged).ok());
  auto bad = ReadTfRecords(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("record 1"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("data CRC mismatch"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace moe::trainer
