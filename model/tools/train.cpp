// SPDX-License-Identifier: MIT
// autoassign train: the trainer on WIDER FACE / COCO / VOC data, single- or multi-process.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <type_traits>

#include "autoassign/data/dataset.h"
#include "autoassign/infer/checkpoint.h"
#include "autoassign/train/engine/trainer.h"
#include "commands.h"

namespace autoassign::cli {
namespace {

extern "C" void on_signal(int) {
  if (g_stop_training.exchange(true)) std::_Exit(130);  // a second Ctrl-C quits at once
}

}  // namespace

Dataset load_datasets(const DatasetSources& d, const std::string& command) {
  if (d.widerface.empty() && d.coco.empty() && d.voc.empty())
    throw CLI::ValidationError(command, "give a dataset: --widerface, --coco or --voc");
  if (!d.coco.empty() && d.coco_images.empty())
    throw CLI::ValidationError(command, "--coco needs --coco-images");
  return load_datasets(d);
}

void add_data_options(CLI::App& cmd, DatasetSources& d) {
  cmd.add_option("--widerface", d.widerface,
                 "WIDER FACE root (wider_face_split/, WIDER_<split>/images/)");
  cmd.add_option("--widerface-split", d.widerface_split, "train or val");
  cmd.add_option("--coco", d.coco, "COCO instances JSON");
  cmd.add_option("--coco-images", d.coco_images, "folder of the COCO images");
  cmd.add_option("--voc", d.voc, "Pascal VOC folder (annotations/*.xml, images/)");
  cmd.add_option("--class-map", d.class_map,
                 "rename VOC classes, e.g. con_mascarilla=face,sin_mascarilla=face,...; "
                 "classes not listed are skipped");
  cmd.add_option("--max-images", d.max_images, "use only the first N images (smoke tests)");
}

// Every TrainOptions flag, made from its row in AUTOASSIGN_TRAIN_OPTIONS (engine/options.h):
// the member, flag, help and, for fixed choices, CLI11's own check; the ranges are checked by
// validate_train_options with the option's name.
void add_train_options(CLI::App& cmd, TrainOptions& o) {
  for_each_train_option(o, [&](const TrainOptionSpec& s, auto& value) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_same_v<T, bool>) {
      if (std::string(s.flag).rfind("--no-", 0) == 0) {
        cmd.add_flag_callback(
            s.flag, [&value] { value = false; }, s.help);
      } else {
        cmd.add_flag(s.flag, value, s.help);
      }
    } else if constexpr (std::is_same_v<T, std::vector<int>>) {
      cmd.add_option(s.flag, value, s.help)->delimiter(',');
    } else {
      auto* opt = cmd.add_option(s.flag, value, s.help)->capture_default_str();
      if (s.check.kind == FieldRule::Kind::kChoices)
        opt->check(CLI::IsMember(rule_choices(s.check)));
    }
  });
  cmd.get_option("--output")->required();
}

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train a model. Multi-process: start one process per rank with MASTER_ADDR, MASTER_PORT, "
      "WORLD_SIZE and RANK set (as torchrun does); gradients are averaged through c10d/Gloo.");
  auto src = std::make_shared<ModelSource>();
  auto data = std::make_shared<DatasetSources>();
  auto o = std::make_shared<TrainOptions>();
  cmd->add_option("--preset", src->preset, "model preset (r50-fpn, r18-fpn, face-rt)");
  cmd->add_option("--config", src->config, "model config JSON");
  add_data_options(*cmd, *data);
  add_train_options(*cmd, *o);
  cmd->callback([=] {
    if (!src->preset.empty() && !src->config.empty()) {
      throw CLI::ValidationError("train", "give one of --preset or --config, not both");
    }
    if (src->preset.empty() && src->config.empty() && o->init.empty()) {
      throw CLI::ValidationError("train", "give --preset, --config or --init");
    }
    if (o->init_grow && (o->init.empty() || (src->preset.empty() && src->config.empty()))) {
      throw CLI::ValidationError("train", "--grow needs --init and the wider --preset or --config");
    }
    ModelConfig config = !src->preset.empty()   ? ModelConfig::preset(src->preset)
                         : !src->config.empty() ? ModelConfig::from_file(src->config)
                                                : read_model_config(o->init);
    if (!o->init.empty() && (!src->preset.empty() || !src->config.empty())) {
      // The weights were trained on the file's input normalisation; another one is allowed
      // (the user's config wins) but rarely meant.
      const InputConfig from = read_model_config(o->init).input;
      if (from.channel_order != config.input.channel_order || from.mean != config.input.mean ||
          from.std != config.input.std) {
        std::cerr << "warning: --init " << o->init << " was trained on " << from.channel_order
                  << " input normalised by its own mean/std; the run's config uses "
                  << config.input.channel_order
                  << " and other values (leave out --preset/--config to keep the file's)\n";
      }
    }
    {  // Every option checked before the datasets are read (minutes for a large one).
      TrainOptions check = *o;
      validate_train_options(check, config);
    }
    Dataset ds = load_datasets(*data, "train");
    if (!o->init.empty() && static_cast<int>(ds.class_names.size()) != config.num_classes) {
      // Fine-tuning for other classes: the classifier takes the dataset's count (and is
      // re-initialised by init_from_model).
      config.num_classes = static_cast<int>(ds.class_names.size());
    }
    if (static_cast<int>(ds.class_names.size()) != config.num_classes) {
      throw std::runtime_error("the dataset has " + std::to_string(ds.class_names.size()) +
                               " classes but the model has " + std::to_string(config.num_classes));
    }
    config.class_names = ds.class_names;
    TrainOptions opts = *o;
    // torchrun's convention: one process per GPU, the GPU named by LOCAL_RANK.
    if (opts.device == "cuda") {
      if (const char* local = std::getenv("LOCAL_RANK"); local && *local) {
        opts.device = std::string("cuda:") + local;
      }
    }
    auto comm = make_communicator_from_env(opts.device);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    auto r = train(config, ds, opts, *comm);
    if (comm->rank() == 0 && !opts.quiet) {
      std::printf(
          "done: %lld iterations, loss %.4f, %.2f images/s, assignment/loss %.1f%% of a step, peak "
          "RSS %.0f MB\n",
          static_cast<long long>(r.iterations_done), r.last_losses["loss"], r.images_per_second,
          100 * r.loss_share, r.peak_rss_mb);
    }
  });
}

}  // namespace autoassign::cli
