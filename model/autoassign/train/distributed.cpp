// SPDX-License-Identifier: MIT
// Data-parallel training across processes through PyTorch's own c10d: a TCPStore rendezvous
// configured as torchrun configures it, and ProcessGroupGloo collectives on CPU tensors, or
// ProcessGroupNCCL on CUDA tensors where LibTorch was built with NCCL (a CUDA LibTorch defines
// USE_C10D_NCCL through its CMake config; Debian's CPU LibTorch does not, so that path is
// compiled only there).
// Debian's libtorch_cpu is built with Gloo, but the header only declares it under this macro.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <cstdlib>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "autoassign/infer/device.h"
#include "autoassign/train/distributed.h"

namespace autoassign {
namespace {

class ProcessGroupCommunicator : public Communicator {
 public:
  ProcessGroupCommunicator(const std::string& addr, int port, int rank, int world_size,
                           torch::Device device)
      : rank_(rank), world_(world_size), device_(device) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(port);
    store_options.isServer = rank == 0;  // rank 0 hosts the store, as torchrun's c10d backend
    store_options.numWorkers = static_cast<size_t>(world_size);
    store_options.timeout = std::chrono::minutes(5);
    auto store = c10::make_intrusive<c10d::TCPStore>(addr, store_options);
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size);
      return;
#endif
      // Without NCCL, Gloo all-reduces CUDA tensors through host memory: correct, slower.
    }
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->devices.push_back(make_device(addr));
    options->timeout = std::chrono::minutes(5);
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  }

  // The interface Gloo's pairs bind to. As in PyTorch: GLOO_SOCKET_IFNAME names it; otherwise
  // a loopback master means a single-machine run (bind loopback), and anything else binds the
  // address this host's name resolves to, not the master's (which is another machine's).
  static std::shared_ptr<::gloo::transport::Device> make_device(const std::string& addr) {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    }
    if (addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1") {
      return c10d::ProcessGroupGloo::createDeviceForHostname(addr);
    }
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void average(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    // One flat buffer: one collective per step instead of one per parameter.
    std::vector<torch::Tensor> flat = {torch::cat(flatten(tensors))};
    group_->allreduce(flat)->wait();
    flat[0].div_(world_);
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }

  double average(double value) override {
    // On the training device: NCCL reduces device tensors only.
    std::vector<torch::Tensor> t = {
        torch::tensor({value}, torch::TensorOptions().dtype(torch::kDouble).device(device_))};
    group_->allreduce(t)->wait();
    return t[0].item<double>() / world_;
  }

  void broadcast(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    std::vector<torch::Tensor> flat = {torch::cat(flatten(tensors))};
    group_->broadcast(flat)->wait();
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }

 private:
  static std::vector<torch::Tensor> flatten(const std::vector<torch::Tensor>& tensors) {
    std::vector<torch::Tensor> parts;
    for (const auto& t : tensors) parts.push_back(t.detach().reshape(-1).to(torch::kFloat));
    return parts;
  }

  int rank_, world_;
  torch::Device device_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
};

}  // namespace

std::unique_ptr<Communicator> make_process_group_communicator(const std::string& addr, int port,
                                                              int rank, int world_size,
                                                              const std::string& device) {
  return std::make_unique<ProcessGroupCommunicator>(addr, port, rank, world_size,
                                                    torch_device(Device::parse(device)));
}

namespace {

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void average(std::vector<torch::Tensor>&) override {}
  double average(double value) override { return value; }
  void broadcast(std::vector<torch::Tensor>&) override {}
};

}  // namespace

std::unique_ptr<Communicator> make_communicator_from_env(const std::string& device) {
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || std::string(world) == "1") return std::make_unique<SingleProcess>();
  auto get = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    if (!v || !*v)
      throw std::runtime_error(std::string("WORLD_SIZE is set but ") + name + " is not");
    return v;
  };
  const int world_size = std::stoi(world);
  const int rank = std::stoi(get("RANK"));
  const int port = std::stoi(get("MASTER_PORT"));
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::runtime_error("RANK " + std::to_string(rank) + " is not in [0, WORLD_SIZE " +
                             std::to_string(world_size) + ")");
  }
  return make_process_group_communicator(get("MASTER_ADDR"), port, rank, world_size, device);
}

}  // namespace autoassign
