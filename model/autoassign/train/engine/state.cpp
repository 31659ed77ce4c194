// SPDX-License-Identifier: MIT
#include "autoassign/train/engine/state.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "autoassign/infer/checkpoint.h"
#include "autoassign/train/engine/options.h"

namespace autoassign {
namespace {

constexpr const char* kCheckpointTag = "autoassign-gst checkpoint";

// The optimiser's state key of a parameter, as LibTorch 1.13's SGD keys it.
std::string state_key(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

std::string momentum_name(size_t group, size_t index) {
  return "optimizer." + std::to_string(group) + "." + std::to_string(index) + ".momentum_buffer";
}

}  // namespace

void for_each_momentum(torch::optim::SGD& opt, bool create,
                       const std::function<void(size_t, size_t, const torch::Tensor&,
                                                torch::optim::SGDParamState*)>& fn) {
  const auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const auto& p = groups[g].params()[i];
      auto& states = opt.state();
      auto it = states.find(state_key(p));
      if (it == states.end() && create) {
        auto st = std::make_unique<torch::optim::SGDParamState>();
        st->momentum_buffer(torch::zeros_like(p));
        it = states.emplace(state_key(p), std::move(st)).first;
      }
      fn(g, i, p,
         it == states.end() ? nullptr : &static_cast<torch::optim::SGDParamState&>(*it->second));
    }
  }
}

void copy_weights(AutoAssign& from, AutoAssign& to) {
  torch::NoGradGuard no_grad;
  auto src = from->parameters(), dst = to->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  auto bsrc = from->buffers(), bdst = to->buffers();
  for (size_t i = 0; i < bsrc.size(); ++i) bdst[i].copy_(bsrc[i]);
}

void update_average(AutoAssign& model, AutoAssign& average, double ema, double ramp, int64_t n) {
  torch::NoGradGuard no_grad;
  const double d = ema * (1.0 - std::exp(-static_cast<double>(n) / ramp));
  auto blend = [d](const std::vector<torch::Tensor>& src, std::vector<torch::Tensor> dst) {
    for (size_t i = 0; i < src.size(); ++i) {
      if (dst[i].is_floating_point()) {
        dst[i].mul_(d).add_(src[i], 1.0 - d);
      } else {
        dst[i].copy_(src[i]);
      }
    }
  };
  blend(model->parameters(), average->parameters());
  blend(model->buffers(), average->buffers());
}

// A resume file is a tensor file like the model file (data only, checked on reading): the
// model's tensors under "model.", SGD's momentum buffers under "optimizer.G.I.", the weight
// average's (TrainOptions::ema) under "ema.", and the iteration, config and options as metadata.
void save_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                     int64_t iteration, const nlohmann::json& options_json, AutoAssign* average) {
  auto tensors = module_tensors(*model, "model.");
  if (average) {
    auto more = module_tensors(**average, "ema.");
    tensors.insert(tensors.end(), more.begin(), more.end());
  }
  for_each_momentum(opt, false,
                    [&](size_t g, size_t i, const torch::Tensor&, torch::optim::SGDParamState* st) {
                      if (st && st->momentum_buffer().defined())
                        tensors.emplace_back(momentum_name(g, i), st->momentum_buffer());
                    });
  write_tensor_file(dir + "/checkpoint.pt",
                    {{"format", kCheckpointTag},
                     {"format_version", "2"},
                     {"iteration", std::to_string(iteration)},
                     {"config", model->config().to_json()},
                     {"options", options_json.dump()}},
                    tensors);
  save_model(dir + "/model.pt", average ? *average : model);
}

int64_t load_checkpoint(const std::string& dir, AutoAssign& model, torch::optim::SGD& opt,
                        const nlohmann::json& options_json, AutoAssign* average) {
  const std::string path = dir + "/checkpoint.pt";
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error("--resume: no checkpoint at " + path);
  }
  TensorFileReader reader(path);
  const auto& meta = reader.header().metadata;
  auto field = [&](const char* key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  int64_t iteration = -1;
  try {
    iteration = std::stoll(field("iteration"));
  } catch (const std::exception&) {
  }
  if (field("format") != kCheckpointTag || field("format_version") != "2" || iteration < 0) {
    throw std::runtime_error(path + ": not an autoassign training checkpoint of format version 2");
  }
  if (field("config") != model->config().to_json()) {
    throw std::runtime_error(path + ": the checkpoint's model config differs from this run's");
  }
  // "Continues exactly" means the same schedule, data order and augmentation: a resumed run
  // with other settings would silently become a different run, so name what differs.
  const auto saved = nlohmann::json::parse(field("options"), nullptr, false);
  std::string differ;
  if (saved.is_object()) {
    // An option newer than the checkpoint was at its default there (the behaviour before it).
    const nlohmann::json defaults = train_options_to_json(TrainOptions{});
    for (const auto& [key, value] : options_json.items()) {
      const auto& was = saved.contains(key) ? saved[key] : defaults[key];
      if (was != value) {
        differ += (differ.empty() ? "" : ", ") + key + " (checkpoint " + was.dump() + ", now " +
                  value.dump() + ")";
      }
    }
  }
  if (!differ.empty()) {
    throw std::runtime_error(path + ": --resume with other training settings than the " +
                             "checkpoint's: " + differ +
                             "; resume with the same flags or start a new run");
  }
  size_t expected = read_module_tensors(reader, *model, "model.").size();
  if (average) {
    // A run that had no average until now (its options predate the field) starts one here.
    if (reader.header().find("ema." + (*average)->named_parameters().begin()->key())) {
      expected += read_module_tensors(reader, **average, "ema.").size();
    } else {
      copy_weights(model, *average);
    }
  }
  for_each_momentum(
      opt, false, [&](size_t g, size_t i, const torch::Tensor& p, torch::optim::SGDParamState*) {
        if (!reader.header().find(momentum_name(g, i))) return;
        auto st = std::make_unique<torch::optim::SGDParamState>();
        st->momentum_buffer(reader.read(momentum_name(g, i), torch::kFloat, p.sizes()));
        opt.state()[state_key(p)] = std::move(st);
        ++expected;
      });
  if (expected != reader.header().tensors.size()) {
    throw std::runtime_error(path + ": holds tensors that are not this run's model or optimiser");
  }
  return iteration;
}

int64_t broadcast_start(Communicator& comm, AutoAssign& model, torch::optim::SGD& opt,
                        int64_t start, bool resume) {
  if (comm.world_size() <= 1) return start;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> state;
  for (auto& p : model->parameters()) state.push_back(p);
  for (auto& b : model->buffers()) state.push_back(b);
  torch::Tensor start_t = torch::tensor({static_cast<double>(start)}, torch::kDouble);
  state.push_back(start_t);
  comm.broadcast(state);
  start = static_cast<int64_t>(start_t.item<double>());
  if (resume && start > 0) {
    // Rank 0 read its momentum from the checkpoint; the others get zero buffers to receive it.
    std::vector<torch::Tensor> momentum;
    for_each_momentum(opt, true,
                      [&](size_t, size_t, const torch::Tensor&, torch::optim::SGDParamState* st) {
                        momentum.push_back(st->momentum_buffer());
                      });
    comm.broadcast(momentum);
  }
  return start;
}

std::vector<std::string> init_from_model(AutoAssign& model, const std::string& path, bool grow) {
  AutoAssign source = load_model(path);
  if (grow) {
    // GroupNorm normalises over groups of channels: more channels regroup the old ones and
    // change what they compute.
    for (const auto* c : {&source->config(), &model->config()}) {
      if (c->backbone.norm == "gn" || c->head.norm == "gn") {
        throw std::runtime_error(path + ": --grow needs BatchNorm or no normalisation; " + c->name +
                                 " uses GroupNorm, whose groups change with the width");
      }
    }
    // Same layout but the widths: another block or tower depth would leave file tensors unused
    // or pair per-level norms with the wrong convs, and the outputs would not be the file's.
    auto layout = [](const ModelConfig& c) {
      auto j = nlohmann::json::parse(c.to_json());
      nlohmann::json l = {{"backbone", j["backbone"]}, {"fpn", j["fpn"]}, {"head", j["head"]}};
      l["backbone"]["channels"] = c.backbone.channels.size();
      l["fpn"].erase("channels");
      l["head"].erase("channels");
      return l;
    };
    const auto& from_config = source->config();
    const auto& to_config = model->config();
    if (layout(from_config) != layout(to_config)) {
      throw std::runtime_error(path + ": --grow needs the same network layout as the --init " +
                               "model; only backbone.channels, fpn.channels and head.channels " +
                               "may differ");
    }
    // Frozen layers would keep their added channels at random values for good.
    for (int k = 0; k < to_config.backbone.freeze_at &&
                    k < static_cast<int>(to_config.backbone.channels.size());
         ++k) {
      if (to_config.backbone.channels[k] != from_config.backbone.channels[k]) {
        throw std::runtime_error(path + ": --grow cannot widen frozen backbone stages (" +
                                 "backbone.channels[" + std::to_string(k) +
                                 "] differs, freeze_at " +
                                 std::to_string(to_config.backbone.freeze_at) + ")");
      }
    }
  }
  std::map<std::string, torch::Tensor> from;
  for (auto& [name, tensor] : module_tensors(*source)) from[name] = tensor;
  const bool classes_differ = source->config().num_classes != model->config().num_classes;
  auto follows_classes = [](const std::string& name) {
    return name.rfind("head.cls_pred.", 0) == 0 || name.rfind("center_prior.", 0) == 0;
  };
  std::vector<std::string> left;
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& to) {
    auto it = from.find(name);
    if (it == from.end()) {
      throw std::runtime_error(path + ": --init model has no tensor '" + name +
                               "': its architecture is not this run's (" + source->config().name +
                               " against " + model->config().name + ")");
    }
    const auto& src = it->second;
    if (src.sizes() != to.sizes()) {
      if (classes_differ && follows_classes(name)) {
        left.push_back(name);
        return;
      }
      // Growable: same rank, every channel dimension (0 and 1) at least the file's, the
      // rest (kernel size) equal.
      bool growable = grow && src.dim() == to.dim();
      for (int64_t d = 0; growable && d < src.dim(); ++d) {
        growable = d < 2 ? src.size(d) <= to.size(d) : src.size(d) == to.size(d);
      }
      if (!growable) {
        std::ostringstream m;
        m << path << ": --init tensor '" << name << "' has shape " << src.sizes()
          << ", this run's model " << to.sizes()
          << (grow ? " (--grow widens channels only)" : " (a wider network: --grow)");
        throw std::runtime_error(m.str());
      }
      // Weights reading added input channels (dimension 1 of a conv) start at zero, the rest
      // of an added output channel (dimension 0) and added per-channel entries keep their
      // initialisation. The readers get gradients at the first step, the producers from the
      // second (once their readers are non-zero).
      if (to.dim() >= 2 && to.size(1) > src.size(1))
        to.narrow(1, src.size(1), to.size(1) - src.size(1)).zero_();
      auto lead = to;
      for (int64_t d = 0; d < src.dim(); ++d) lead = lead.narrow(d, 0, src.size(d));
      lead.copy_(src);
      return;
    }
    to.copy_(src);
  };
  for (auto& p : model->named_parameters()) fill(p.key(), p.value());
  for (auto& b : model->named_buffers()) fill(b.key(), b.value());
  return left;
}

}  // namespace autoassign
