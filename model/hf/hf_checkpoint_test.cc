// Tests for HF directories: the golden tiny model, sharded write/read through the index, FP8 block
// dequantisation with partial edge blocks, and refusal of broken indexes.
#include "model/hf/hf_checkpoint.h"

#include <cmath>
#include <cstdlib>
#include <random>
#include <set>

#include "base/bf16.h"
#include "gtest/gtest.h"
#include "base/file_util.h"
#include "model/hf/safetensors.h"

namespace moe::hf {
namespace {

constexpr char kGoldenDir[] = "tests/testdata/golden/tiny_fp32";
constexpr char kConfig[] = "{\"model_type\": \"deepseek_v3\"}\n";

std::string TestDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = JoinPath(tmp ? tmp : "/tmp",
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  EXPECT_TRUE(MakeDirs(dir).ok());
  return dir;
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

TEST(HfCheckpoint, ReadsGoldenTinyModel) {
  auto src = HfTensorSource::Open(kGoldenDir);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->Names().size(), 91u);
  EXPECT_TRUE(src->Contains("model.layers.2.mlp.experts.7.down_proj.weight"));
  EXPECT_FALSE(src->Contains("model.layers.3.input_layernorm.weight"));
  EXPECT_EQ(src->block_size().rows, 128);

  auto head = src->Read("lm_head.weight", {256, 64});
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_EQ(head->size(), 256u * 64u);
  EXPECT_EQ(head->front(), static_cast<float>(-0.0023474383633583784));
  EXPECT_EQ(head->back(), static_cast<float>(0.011868811212480068));
  double sum = 0;
  for (const float v : *head) sum += v;
  EXPECT_NEAR(sum, 1.7179143030851947, 1e-9);

  auto bias = src->Read("model.layers.1.mlp.gate.e_score_correction_bias", {8});
  ASSERT_TRUE(bias.ok()) << bias.status();
  EXPECT_EQ(bias->front(), static_cast<float>(-0.009804094210267067));

  auto wrong = src->Read("lm_head.weight", {64, 256});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(Msg(wrong.status()), std::string("tensor lm_head.weight in ") + kGoldenDir +
                                     "/model.safetensors has shape [256,64], expected [64,256]");
  auto missing = src->Read("no.such.weight", {1});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  auto config = src->ReadConfigJson();
  ASSERT_TRUE(config.ok());
  EXPECT_NE(config->find("\"deepseek_v3\""), std::string::npos);
}

// Reads every golden tensor, writes it back sharded (F32) and as one BF16 file, and reads both.
TEST(HfCheckpoint, GoldenRoundTripShardedAndBf16) {
  auto src = HfTensorSource::Open(kGoldenDir);
  ASSERT_TRUE(src.ok()) << src.status();
  const std::vector<std::string> names = src->Names();
  std::vector<std::vector<float>> values;
  std::vector<WriteTensor> f32, bf16;
  for (const std::string& name : names) {
    const TensorInfo* info = src->Find(name);
    ASSERT_NE(info, nullptr);
    auto v = src->Read(name, info->shape);
    ASSERT_TRUE(v.ok()) << v.status();
    values.push_back(std::move(*v));
  }
  uint64_t total = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::vector<int64_t>& shape = src->Find(names[i])->shape;
    f32.push_back({names[i], DType::kF32, shape, values[i].data()});
    const bool is_bias = names[i].find("e_score_correction_bias") != std::string::npos;
    bf16.push_back({names[i], is_bias ? DType::kF32 : DType::kBF16, shape, values[i].data()});
    total += values[i].size() * 4;
  }
  auto config = src->ReadConfigJson();
  ASSERT_TRUE(config.ok());

  const std::string dir = JoinPath(TestDir(), "sharded");
  ASSERT_TRUE(WriteHfDirectory(dir, *config, f32, 200000).ok());
  EXPECT_FALSE(FileExists(JoinPath(dir, kSingleFile)));
  auto index = ReadFileToString(JoinPath(dir, kIndexFile));
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->rfind("{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(total) +
                             "\n  },\n  \"weight_map\": {\n    \"lm_head.weight\": \"model-00001-of-",
                         0),
            0u)
      << *index;
  auto back = HfTensorSource::Open(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Names(), names);
  EXPECT_EQ(*back->ReadConfigJson(), *config);
  std::set<std::string> files;
  for (size_t i = 0; i < names.size(); ++i) {
    files.insert(back->FileOf(names[i]));
    auto v = back->Read(names[i], src->Find(names[i])->shape);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, values[i]) << names[i];
  }
  EXPECT_GE(files.size(), 4u);  // 832 KB in shards of at most 200 KB
  auto shard = SafetensorsFile::Open(back->FileOf("lm_head.weight"));
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(shard->metadata().at("format"), "pt");

  // Same directory rewritten as one BF16 file: the stale index must go.
  ASSERT_TRUE(WriteHfDirectory(dir, *config, bf16, uint64_t{1} << 30).ok());
  EXPECT_FALSE(FileExists(JoinPath(dir, kIndexFile)));
  auto single = HfTensorSource::Open(dir);
  ASSERT_TRUE(single.ok()) << single.status();
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorInfo* info = single->Find(names[i]);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, bf16[i].dtype) << names[i];
    auto v = single->Read(names[i], info->shape);
    ASSERT_TRUE(v.ok());
    for (size_t j = 0; j < v->size(); ++j) {
      const float want = bf16[i].dtype == DType::kF32 ? values[i][j] : RoundToBf16(values[i][j]);
      ASSERT_EQ((*v)[j], want) << names[i] << "[" << j << "]";
    }
  }
}

TEST(HfCheckpoint, ShardingRules) {
  const std::string dir = TestDir();
  std::vector<float> x(100, 1.0f);
  // 400 + 400 + 40 + 400 bytes with a 800-byte limit: [a b] [c d].
  const std::vector<WriteTensor> tensors = {{"a", DType::kF32, {100}, x.data()},
                                            {"b", DType::kF32, {100}, x.data()},
                                            {"c", DType::kF32, {10}, x.data()},
                                            {"d", DType::kF32, {100}, x.data()}};
  ASSERT_TRUE(WriteHfDirectory(dir, kConfig, tensors, 800).ok());
  auto src = HfTensorSource::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->FileOf("a"), JoinPath(dir, "model-00001-of-00002.safetensors"));
  EXPECT_EQ(src->FileOf("b"), JoinPath(dir, "model-00001-of-00002.safetensors"));
  EXPECT_EQ(src->FileOf("c"), JoinPath(dir, "model-00002-of-00002.safetensors"));
  EXPECT_EQ(src->FileOf("d"), JoinPath(dir, "model-00002-of-00002.safetensors"));
  EXPECT_EQ(src->FileOf("e"), "");
  // An oversized tensor gets a shard of its own.
  ASSERT_TRUE(WriteHfDirectory(dir, kConfig, tensors, 100).ok());
  src = HfTensorSource::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->FileOf("d"), JoinPath(dir, "model-00004-of-00004.safetensors"));
  // Not JSON: refused before anything is written.
  EXPECT_FALSE(WriteHfDirectory(JoinPath(dir, "x"), "not json", tensors, 100).ok());
  EXPECT_FALSE(FileExists(JoinPath(JoinPath(dir, "x"), kConfigFile)));
}

TEST(HfCheckpoint, EmptyOrMissingDirectory) {
  auto src = HfTensorSource::Open(TestDir());
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), absl::StatusCode::kNotFound);
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "model.safetensors", Msg(src.status()));
}

// Writes a two-shard directory and then replaces its index with `index_json`.
std::string DirWithIndex(const std::string& index_json) {
  const std::string dir = TestDir();
  std::vector<float> x(100, 1.0f);
  EXPECT_TRUE(WriteHfDirectory(dir, kConfig,
                               {{"a", DType::kF32, {100}, x.data()}, {"b", DType::kF32, {100}, x.data()}},
                               400)
                  .ok());
  EXPECT_TRUE(WriteFileAtomically(JoinPath(dir, kIndexFile), index_json).ok());
  return dir;
}

TEST(HfCheckpoint, IndexWithMissingShardRefused) {
  const std::string dir = DirWithIndex(
      R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                         "b": "model-00009-of-00009.safetensors"}})");
  auto src = HfTensorSource::Open(dir);
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), absl::StatusCode::kNotFound);
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "model-00009-of-00009.safetensors", Msg(src.status()));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "'b'", Msg(src.status()));
}

TEST(HfCheckpoint, IndexWithTensorMissingFromShardRefused) {
  const std::string dir = DirWithIndex(
      R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                         "b": "model-00001-of-00002.safetensors"}})");
  auto src = HfTensorSource::Open(dir);
  ASSERT_FALSE(src.ok());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "tensor 'b'", Msg(src.status()));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "model-00001-of-00002.safetensors", Msg(src.status()));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "no such tensor", Msg(src.status()));
}

TEST(HfCheckpoint, IndexWithBadEntriesRefused) {
  EXPECT_FALSE(HfTensorSource::Open(DirWithIndex(R"({"weight_map": {"a": "../model.safetensors"}})")).ok());
  EXPECT_FALSE(HfTensorSource::Open(DirWithIndex(R"({"weight_map": {"a": 3}})")).ok());
  EXPECT_FALSE(HfTensorSource::Open(DirWithIndex(R"({"metadata": {}})")).ok());
  EXPECT_FALSE(HfTensorSource::Open(DirWithIndex("not json")).ok());
}

// FP8 E4M3 weight [130, 260] with 128x128 blocks: scale_inv [2, 3], partial blocks on both edges.
struct Fp8Case {
  std::vector<uint8_t> q;      // [R, C]
  std::vector<float> scale;    // [ceil(R/br), ceil(C/bc)]
};

Fp8Case MakeFp8Case(int64_t rows, int64_t cols, int64_t br, int64_t bc, uint32_t seed) {
  std::mt19937 rng(seed);
  Fp8Case c;
  c.q.resize(rows * cols);
  for (uint8_t& b : c.q) {
    do b = static_cast<uint8_t>(rng() & 0xFF); while ((b & 0x7F) == 0x7F);  // no NaN codes
  }
  const int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
  for (int64_t i = 0; i < sr * sc; ++i) c.scale.push_back(std::ldexp(1.0f + i, -int(i % 5)));
  return c;
}

void ExpectDequantised(const std::vector<float>& got, const Fp8Case& c, int64_t rows, int64_t cols,
                       int64_t br, int64_t bc) {
  ASSERT_EQ(got.size(), static_cast<size_t>(rows * cols));
  const int64_t sc = (cols + bc - 1) / bc;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t col = 0; col < cols; ++col) {
      const float want = F8E4M3ToFloat(c.q[r * cols + col]) * c.scale[(r / br) * sc + col / bc];
      ASSERT_EQ(got[r * cols + col], want) << r << "," << col;
    }
  }
}

TEST(HfCheckpoint, Fp8BlockDequantisation) {
  const std::string dir = TestDir();
  const Fp8Case c = MakeFp8Case(130, 260, 128, 128, 11);
  ASSERT_EQ(c.scale.size(), 6u);
  std::vector<float> norm(130, 0.5f);
  ASSERT_TRUE(WriteHfDirectory(dir, kConfig,
                               {{"x.weight", DType::kF8E4M3, {130, 260}, nullptr, c.q.data()},
                                {"x.weight_scale_inv", DType::kF32, {2, 3}, c.scale.data()},
                                {"norm.weight", DType::kBF16, {130}, norm.data()}},
                               uint64_t{1} << 30)
                  .ok());
  auto src = HfTensorSource::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status();
  auto w = src->Read("x.weight", {130, 260});
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectDequantised(*w, c, 130, 260, 128, 128);
  // The corner elements sit in the partial blocks.
  EXPECT_EQ((*w)[129 * 260 + 259], F8E4M3ToFloat(c.q[129 * 260 + 259]) * c.scale[5]);
  EXPECT_EQ(*src->Read("norm.weight", {130}), norm);

  // A block size that does not match the scale tensor's shape is refused, naming both.
  auto bad = src->Read("x.weight", {130, 260}, Fp8BlockSize{64, 64});
  ASSERT_FALSE(bad.ok());
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "x.weight_scale_inv", Msg(bad.status()));
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, "expected [3,5]", Msg(bad.status()));
}

TEST(HfCheckpoint, Fp8BlockSizeFromConfig) {
  const std::string dir = TestDir();
  const Fp8Case c = MakeFp8Case(130, 260, 64, 128, 12);  // scale [3, 3]
  ASSERT_TRUE(WriteHfDirectory(
                  dir,
                  R"({"quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                              "weight_block_size": [64, 128]}})",
                  {{"x.weight", DType::kF8E4M3, {130, 260}, nullptr, c.q.data()},
                   {"x.weight_scale_inv", DType::kF32, {3, 3}, c.scale.data()}},
                  1000)  // sharded: weight and scale in different files
                  .ok());
  auto src = HfTensorSource::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_NE(src->FileOf("x.weight"), src->FileOf("x.weight_scale_inv"));
  EXPECT_EQ(src->block_size().rows, 64);
  EXPECT_EQ(src->block_size().cols, 128);
  auto w = src->Read("x.weight", {130, 260});
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectDequantised(*w, c, 130, 260, 64, 128);
  auto explicit_block = src->Read("x.weight", {130, 260}, Fp8BlockSize{64, 128});
  ASSERT_TRUE(explicit_block.ok());
  EXPECT_EQ(*explicit_block, *w);
}

}  // namespace
}  // namespace moe::hf
