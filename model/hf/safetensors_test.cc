// Tests for the safetensors reader/writer: round trips in F32/BF16/F16/F64/FP8, dtype decoders,
// and refusal of malformed files with errors that name the file and the tensor.
#include "model/hf/safetensors.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "base/file_util.h"

namespace moe::hf {
namespace {

std::string TestDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = JoinPath(tmp ? tmp : "/tmp",
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

// Writes a file in safetensors layout from a literal header and data buffer.
void WriteRaw(const std::string& path, const std::string& header, const std::string& data,
              uint64_t header_len_override = 0) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header_len_override ? header_len_override : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

// Opening `path` fails and the message names the file and contains every `parts`.
void ExpectOpenError(const std::string& path, std::initializer_list<const char*> parts) {
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok()) << path << " opened";
  const std::string msg(f.status().message());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, path, msg);
  for (const char* p : parts) EXPECT_PRED_FORMAT2(::testing::IsSubstring, p, msg);
}

std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(*ParseDType("F8_E4M3"), DType::kF8E4M3);
  EXPECT_EQ(*ParseDType("BF16"), DType::kBF16);
  EXPECT_EQ(*ParseDType("BOOL"), DType::kBool);
  EXPECT_STREQ(DTypeName(DType::kF8E5M2), "F8_E5M2");
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1u);
  EXPECT_FALSE(ParseDType("F4").ok());
  EXPECT_FALSE(ParseDType("f32").ok());
}

TEST(Decode, F8E4M3Table) {
  EXPECT_EQ(F8E4M3ToFloat(0x00), 0.0f);
  EXPECT_EQ(F8E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(F8E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(F8E4M3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(F8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(F8E4M3ToFloat(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(F8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(F8E4M3ToFloat(0x78), 256.0f);
  EXPECT_EQ(F8E4M3ToFloat(0xC0), -2.0f);
  EXPECT_TRUE(std::isnan(F8E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(F8E4M3ToFloat(0xFF)));
  EXPECT_TRUE(std::signbit(F8E4M3ToFloat(0x80)));
  // Every code against the definition (no infinities anywhere).
  for (int b = 0; b < 256; ++b) {
    const float v = F8E4M3ToFloat(static_cast<uint8_t>(b));
    if ((b & 0x7F) == 0x7F) continue;
    const int e = (b >> 3) & 15, m = b & 7;
    const double mag = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
    EXPECT_EQ(static_cast<double>(v), (b & 0x80) ? -mag : mag) << b;
    EXPECT_FALSE(std::isinf(v));
  }
}

TEST(Decode, F8E5M2) {
  EXPECT_EQ(F8E5M2ToFloat(0x3C), 1.0f);
  EXPECT_EQ(F8E5M2ToFloat(0x7B), 57344.0f);
  EXPECT_EQ(F8E5M2ToFloat(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(F8E5M2ToFloat(0xC0), -2.0f);
  EXPECT_TRUE(std::isinf(F8E5M2ToFloat(0x7C)));
  EXPECT_TRUE(std::isnan(F8E5M2ToFloat(0x7D)));
}

TEST(Decode, F16) {
  EXPECT_EQ(F16BitsToFloat(0x3C00), 1.0f);
  EXPECT_EQ(F16BitsToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(F16BitsToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16BitsToFloat(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(F16BitsToFloat(0x7C00)));
  EXPECT_EQ(FloatToF16Bits(1.0f), 0x3C00);
  EXPECT_EQ(FloatToF16Bits(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16Bits(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16Bits(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToF16Bits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(FloatToF16Bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1.0f, -25)), 0x0000);             // subnormal tie -> even
  EXPECT_EQ(FloatToF16Bits(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(FloatToF16Bits(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into the normals
  EXPECT_EQ(FloatToF16Bits(-0.0f), 0x8000);
  EXPECT_EQ(FloatToF16Bits(std::numeric_limits<float>::quiet_NaN()) & 0x7E00, 0x7E00);
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = F16BitsToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToF16Bits(f), b);
  }
}

TEST(Safetensors, RoundTripF32) {
  const std::string path = JoinPath(TestDir(), "f32.safetensors");
  const std::vector<float> a = RandomFloats(6, 1), b = RandomFloats(5, 2);
  const float s = 3.25f;
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"w.a", DType::kF32, {2, 3}, a.data()},
                                {"bias", DType::kF32, {5}, b.data()},
                                {"scalar", DType::kF32, {}, &s},
                                {"empty", DType::kF32, {0, 4}, nullptr}},
                               {{"format", "pt"}})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_NE(f->Find("w.a"), nullptr);
  EXPECT_EQ(f->Find("w.a")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f->Find("w.a")->dtype, DType::kF32);
  EXPECT_EQ(f->Find("scalar")->shape.size(), 0u);
  EXPECT_EQ(f->Find("empty")->begin, f->Find("empty")->end);
  EXPECT_EQ(f->Find("nope"), nullptr);
  EXPECT_EQ(*f->ReadAsFloat("w.a"), a);
  EXPECT_EQ(*f->ReadAsFloat("bias"), b);
  EXPECT_EQ(*f->ReadAsFloat("scalar"), std::vector<float>{3.25f});
  EXPECT_TRUE(f->ReadAsFloat("empty")->empty());
  auto missing = f->ReadAsFloat("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "nope", std::string(missing.status().message()));

  // Header padded with spaces so the data buffer starts 8-byte aligned.
  auto text = ReadFileToString(path);
  ASSERT_TRUE(text.ok());
  uint64_t n;
  std::memcpy(&n, text->data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ((*text)[8], '{');
  EXPECT_EQ(text->size(), 8 + n + (6 + 5 + 1) * 4);
}

TEST(Safetensors, RoundTripBf16WithF32Bias) {
  const std::string path = JoinPath(TestDir(), "bf16.safetensors");
  const std::vector<float> w = RandomFloats(7 * 3, 3), bias = RandomFloats(3, 4), odd = RandomFloats(3, 5);
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"odd.weight", DType::kBF16, {3}, odd.data()},
                                {"w.weight", DType::kBF16, {7, 3}, w.data()},
                                {"gate.e_score_correction_bias", DType::kF32, {3}, bias.data()}},
                               {})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->metadata().empty());
  auto back = f->ReadAsFloat("w.weight");
  ASSERT_TRUE(back.ok());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ((*back)[i], RoundToBf16(w[i])) << i;
  EXPECT_EQ(*f->ReadAsFloat("gate.e_score_correction_bias"), bias);
  EXPECT_EQ(f->Find("w.weight")->dtype, DType::kBF16);
  // Every tensor starts at a multiple of its element size (F32 laid out first).
  for (const TensorInfo& t : f->tensors()) EXPECT_EQ(t.begin % DTypeSize(t.dtype), 0u) << t.name;
  EXPECT_EQ(f->tensors()[0].name, "gate.e_score_correction_bias");
}

TEST(Safetensors, RoundTripF16F64AndRawFp8) {
  const std::string path = JoinPath(TestDir(), "mixed.safetensors");
  const std::vector<float> h = {1.0f, -2.5f, 1e-6f, 70000.0f}, d = {0.1f, -1e30f};
  const uint8_t fp8[4] = {0x38, 0x7E, 0x01, 0xC0};
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"h", DType::kF16, {4}, h.data()},
                                {"d", DType::kF64, {2}, d.data()},
                                {"q", DType::kF8E4M3, {2, 2}, nullptr, fp8}},
                               {})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const std::vector<float> hb = *f->ReadAsFloat("h");
  EXPECT_EQ(hb[0], 1.0f);
  EXPECT_EQ(hb[1], -2.5f);
  EXPECT_EQ(hb[2], F16BitsToFloat(FloatToF16Bits(1e-6f)));
  EXPECT_TRUE(std::isinf(hb[3]));
  EXPECT_EQ(*f->ReadAsFloat("d"), d);
  EXPECT_EQ(*f->ReadAsFloat("q"), (std::vector<float>{1.0f, 448.0f, std::ldexp(1.0f, -9), -2.0f}));
}

TEST(Safetensors, EmptyFileIsValid) {
  const std::string path = JoinPath(TestDir(), "empty.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}, {}).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->tensors().empty());
}

TEST(Safetensors, WriterRefusesBadInput) {
  const std::string path = JoinPath(TestDir(), "bad.safetensors");
  const float x[4] = {1, 2, 3, 4};
  EXPECT_FALSE(WriteSafetensors(path, {{"a", DType::kF32, {4}, x}, {"a", DType::kF32, {4}, x}}, {}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"a", DType::kF8E4M3, {4}, x}}, {}).ok());  // no float encoder
  EXPECT_FALSE(WriteSafetensors(path, {{"a", DType::kF32, {4}, nullptr}}, {}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"a", DType::kF32, {-1}, x}}, {}).ok());
  EXPECT_FALSE(WriteSafetensors(path, {{"__metadata__", DType::kF32, {4}, x}}, {}).ok());
  EXPECT_FALSE(FileExists(path));
}

// A valid two-tensor header for the malformed-file cases below: a [0,8) and b [8,16), F32 [2].
constexpr char kGoodData[] = "0123456789abcdef";

TEST(SafetensorsMalformed, TooShort) {
  const std::string path = JoinPath(TestDir(), "short.safetensors");
  std::ofstream(path) << "abc";
  ExpectOpenError(path, {"too short"});
}

TEST(SafetensorsMalformed, HeaderLengthBeyondFile) {
  const std::string path = JoinPath(TestDir(), "hlen.safetensors");
  WriteRaw(path, "{}", "", 1000);
  ExpectOpenError(path, {"header length 1000", "past the end of the file"});
}

TEST(SafetensorsMalformed, HeaderTooLarge) {
  const std::string path = JoinPath(TestDir(), "huge.safetensors");
  WriteRaw(path, "{}", "", 100000001);
  ExpectOpenError(path, {"exceeds the limit"});
}

TEST(SafetensorsMalformed, NotJson) {
  const std::string path = JoinPath(TestDir(), "notjson.safetensors");
  WriteRaw(path, "{\"a\": [1,}", "");
  ExpectOpenError(path, {"invalid JSON"});
  WriteRaw(path, "[1, 2]  ", "");
  ExpectOpenError(path, {"'{'"});
}

TEST(SafetensorsMalformed, TruncatedData) {
  const std::string path = JoinPath(TestDir(), "trunc.safetensors");
  const std::vector<float> a = RandomFloats(16, 6), b = RandomFloats(4, 7);
  ASSERT_TRUE(WriteSafetensors(path, {{"a", DType::kF32, {16}, a.data()},
                                      {"b", DType::kF32, {4}, b.data()}}, {}).ok());
  auto size = ReadFileToString(path);
  ASSERT_TRUE(size.ok());
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size->size() - 3)), 0);
  ExpectOpenError(path, {"tensor 'b'", "past the end of the data buffer"});
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  const std::string path = JoinPath(TestDir(), "overlap.safetensors");
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[3],"data_offsets":[4,16]}})",
           kGoodData);
  ExpectOpenError(path, {"tensor 'b'", "overlap tensor 'a'"});
}

TEST(SafetensorsMalformed, Hole) {
  const std::string path = JoinPath(TestDir(), "hole.safetensors");
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           kGoodData);
  ExpectOpenError(path, {"hole", "[4,8)", "tensor 'b'"});
}

TEST(SafetensorsMalformed, TrailingBytes) {
  const std::string path = JoinPath(TestDir(), "trailing.safetensors");
  WriteRaw(path, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", kGoodData);
  ExpectOpenError(path, {"trailing"});
}

TEST(SafetensorsMalformed, WrongByteCountForShape) {
  const std::string path = JoinPath(TestDir(), "count.safetensors");
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "needs 12"});
}

TEST(SafetensorsMalformed, UnknownDType) {
  const std::string path = JoinPath(TestDir(), "dtype.safetensors");
  WriteRaw(path, R"({"c":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}})", kGoodData);
  ExpectOpenError(path, {"tensor 'c'", "unsupported dtype 'C64'"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
  const std::string path = JoinPath(TestDir(), "dup.safetensors");
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           kGoodData);
  ExpectOpenError(path, {"'a'"});
}

TEST(SafetensorsMalformed, BadEntries) {
  const std::string path = JoinPath(TestDir(), "entries.safetensors");
  WriteRaw(path, R"({"a":{"dtype":"F32","shape":[4]}})", kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "data_offsets"});
  WriteRaw(path, R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0.5,16]}})", kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "data_offsets[0]"});
  WriteRaw(path, R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "shape[0]"});
  WriteRaw(path, R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "end < begin"});
  WriteRaw(path, R"({"a":[1,2]})", kGoodData);
  ExpectOpenError(path, {"tensor 'a'", "must be an object"});
  WriteRaw(path,
           R"({"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
           kGoodData);
  ExpectOpenError(path, {"__metadata__", "format"});
}

TEST(SafetensorsMalformed, ZeroSizedTensorInsideAnother) {
  const std::string path = JoinPath(TestDir(), "zero.safetensors");
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
           R"("z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})",
           kGoodData);
  ExpectOpenError(path, {"tensor 'z'", "overlap"});
  // ... but one at a tensor boundary is fine.
  WriteRaw(path,
           R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
           R"("z":{"dtype":"F32","shape":[0],"data_offsets":[16,16]}})",
           kGoodData);
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
}

}  // namespace
}  // namespace moe::hf
