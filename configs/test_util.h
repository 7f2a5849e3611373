// Helpers shared by the configs tests.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

#include "configs/config_loader.h"
#include "gtest/gtest.h"

namespace moe::config {

inline TrainConfig LoadOrDie(const std::string& path) {
  absl::StatusOr<TrainConfig> cfg = LoadTrainConfig(path);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return cfg.ok() ? *cfg : TrainConfig();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace moe::config
