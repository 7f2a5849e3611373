#include "parallel/split_communicator.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/local_communicator.h"

namespace moe::parallel {
namespace {

// A one-rank group that records which collectives reached it.
class Recorder final : public Communicator {
 public:
  explicit Recorder(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  void AllReduceSum(float*, int64_t) override { log.push_back("AllReduceSum(float)"); }
  void AllReduceSum(double*, int64_t) override { log.push_back("AllReduceSum(double)"); }
  void AllReduceSum(int64_t*, int64_t) override { log.push_back("AllReduceSum(int64)"); }
  void AllReduceMax(double*, int64_t) override { log.push_back("AllReduceMax(double)"); }
  void ReduceScatterSum(const float*, float*, int64_t) override { log.push_back("ReduceScatterSum(float)"); }
  void AllGather(const float*, float*, int64_t) override { log.push_back("AllGather(float)"); }
  void AllGather(const uint16_t*, uint16_t*, int64_t) override { log.push_back("AllGather(bf16)"); }
  void AllGather(const int64_t*, int64_t*, int64_t) override { log.push_back("AllGather(int64)"); }
  void AllToAllV(const float*, const std::vector<int64_t>&, float*, const std::vector<int64_t>&) override {
    log.push_back("AllToAllV(float)");
  }
  void AllToAllV(const int32_t*, const std::vector<int64_t>&, int32_t*, const std::vector<int64_t>&) override {
    log.push_back("AllToAllV(int32)");
  }
  void AllToAll(const int64_t*, int64_t*, int64_t) override { log.push_back("AllToAll(int64)"); }
  void Broadcast(float*, int64_t, int) override { log.push_back("Broadcast(float)"); }
  void Broadcast(int64_t*, int64_t, int) override { log.push_back("Broadcast(int64)"); }
  void Barrier() override { log.push_back("Barrier"); }
  std::vector<std::string> log;

 private:
  std::string name_;
};

TEST(SplitCommunicator, FloatsGoToTheTensorGroupEverythingElseToTheHostGroup) {
  auto tensors = std::make_unique<Recorder>("nccl");
  Recorder* t = tensors.get();
  Recorder host("tp");
  SplitCommunicator c(std::move(tensors), &host);
  EXPECT_EQ(c.name(), "tp");
  float f = 0;
  double d = 0;
  int64_t i = 0;
  int32_t j = 0;
  const std::vector<int64_t> counts = {1};
  c.AllReduceSum(&f, 1);
  c.ReduceScatterSum(&f, &f, 1);
  c.AllGather(&f, &f, 1);
  uint16_t b = 0;
  c.AllGather(&b, &b, 1);
  c.AllToAllV(&f, counts, &f, counts);
  c.Broadcast(&f, 1, 0);
  c.AllReduceSum(&d, 1);
  c.AllReduceSum(&i, 1);
  c.AllReduceMax(&d, 1);
  c.AllGather(&i, &i, 1);
  c.AllToAllV(&j, counts, &j, counts);
  c.AllToAll(&i, &i, 1);
  c.Broadcast(&i, 1, 0);
  c.Barrier();
  EXPECT_EQ(t->log, (std::vector<std::string>{"AllReduceSum(float)", "ReduceScatterSum(float)", "AllGather(float)",
                                              "AllGather(bf16)", "AllToAllV(float)", "Broadcast(float)"}));
  EXPECT_EQ(host.log, (std::vector<std::string>{"AllReduceSum(double)", "AllReduceSum(int64)",
                                                "AllReduceMax(double)", "AllGather(int64)", "AllToAllV(int32)",
                                                "AllToAll(int64)", "Broadcast(int64)", "Barrier"}));
}

}  // namespace
}  // namespace moe::parallel
