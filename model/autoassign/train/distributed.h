// SPDX-License-Identifier: MIT
// Data-parallel training: the collectives the step loop needs, single-process or through
// PyTorch's c10d (Gloo on CPU, NCCL on CUDA), started as torchrun starts workers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace autoassign {

/// Averages gradients and scalars over the processes of a job; single-process: no-op.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual void average(std::vector<torch::Tensor>& tensors) = 0;
  virtual double average(double value) = 0;
  virtual void broadcast(std::vector<torch::Tensor>& tensors) = 0;
};

/// From the torchrun environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK): a c10d process
/// group over a TCPStore, ProcessGroupNCCL when `device` is CUDA and LibTorch has NCCL,
/// ProcessGroupGloo otherwise; without WORLD_SIZE (or WORLD_SIZE=1) a single process.
std::unique_ptr<Communicator> make_communicator_from_env(const std::string& device = "cpu");

}  // namespace autoassign
