// SPDX-License-Identifier: MIT
// autoassign train: the trainer on WIDER FACE / COCO / VOC data, single- or multi-process.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "autoassign/checkpoint.h"
#include "autoassign/dataset.h"
#include "autoassign/trainer.h"
#include "commands.h"

namespace autoassign::cli {
namespace {

extern "C" void on_signal(int) {
  if (g_stop_training.exchange(true)) std::_Exit(130);  // a second Ctrl-C quits at once
}

}  // namespace

Dataset load_datasets(const DataOptions& d, const std::string& command) {
  std::vector<Dataset> parts;
  if (!d.widerface.empty()) parts.push_back(load_widerface(d.widerface, d.widerface_split));
  if (!d.coco.empty()) {
    if (d.coco_images.empty()) throw CLI::ValidationError(command, "--coco needs --coco-images");
    parts.push_back(load_coco(d.coco, d.coco_images));
  }
  if (!d.voc.empty()) parts.push_back(load_voc(d.voc, parse_class_map(d.class_map)));
  if (parts.empty())
    throw CLI::ValidationError(command, "give a dataset: --widerface, --coco or --voc");
  Dataset all = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) all.append(parts[i]);
  if (d.max_images > 0 && static_cast<int>(all.samples.size()) > d.max_images) {
    all.samples.resize(static_cast<size_t>(d.max_images));
  }
  return all;
}

void add_data_options(CLI::App& cmd, DataOptions& d) {
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

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train a model. Multi-process: start one process per rank with MASTER_ADDR, MASTER_PORT, "
      "WORLD_SIZE and RANK set (as torchrun does); gradients are averaged through c10d/Gloo.");
  auto src = std::make_shared<ModelSource>();
  auto data = std::make_shared<DataOptions>();
  auto o = std::make_shared<TrainOptions>();
  auto no_hflip = std::make_shared<bool>(false);
  cmd->add_option("--preset", src->preset, "model preset (r50-fpn, r18-fpn, face-rt)");
  cmd->add_option("--config", src->config, "model config JSON");
  add_data_options(*cmd, *data);
  cmd->add_option("-o,--output", o->output_dir, "run directory: checkpoint.pt, model.pt, log.jsonl")
      ->required();
  cmd->add_option("--iterations", o->iterations, "total iterations")->capture_default_str();
  cmd->add_option("--batch", o->batch_size, "images per iteration and process")
      ->capture_default_str();
  cmd->add_option("--lr", o->lr, "base learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "SGD weight decay (none on norm layers)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup_iterations, "linear warm-up iterations")
      ->capture_default_str();
  cmd->add_option("--schedule", o->schedule, "step or cosine")->capture_default_str();
  cmd->add_option("--steps", o->steps, "iterations where a step schedule multiplies the lr by 0.1")
      ->delimiter(',');
  cmd->add_option("--clip-grad", o->clip_grad_norm, "clip the gradient norm (0 = off)");
  cmd->add_option("--checkpoint-every", o->checkpoint_every, "iterations between checkpoints")
      ->capture_default_str();
  cmd->add_option("--snapshot-every", o->snapshot_every, "also keep model_iter_N.pt every N");
  cmd->add_option("--log-every", o->log_every, "iterations between log lines")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "LibTorch threads (0 = one per core)");
  cmd->add_option("--device", o->device,
                  "cpu, cuda or cuda:N; with several processes 'cuda' means cuda:$LOCAL_RANK")
      ->capture_default_str();
  cmd->add_option("--loader-threads", o->loader_threads, "image decoding/augmentation threads")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "random seed (weights, order, augmentation)");
  cmd->add_flag("--resume", o->resume, "continue from OUTPUT/checkpoint.pt");
  cmd->add_option("--init", o->init,
                  "start from this model file's weights (fine-tuning: an `autoassign import`ed "
                  "published model or ImageNet backbone, or an earlier model.pt). Without "
                  "--preset/--config its architecture, input normalisation and frozen stages "
                  "are the run's; a different class count re-initialises the classifier");
  cmd->add_flag("--grow", o->init_grow,
                "with --init and a --preset/--config of more channels (backbone stages, FPN, head; "
                "BatchNorm models): start from the --init model's function, the added channels "
                "at zero influence (function-preserving widening)");
  cmd->add_option("--stop-after", o->stop_after,
                  "stop (with a checkpoint) after N iterations of this run");
  cmd->add_option("--crop-min", o->crop_min,
                  "random crop: smallest region as a fraction of the letterbox region (1 = off)")
      ->capture_default_str();
  cmd->add_option("--crop-max", o->crop_max,
                  "random crop: largest region as a fraction of the letterbox region; above 1 "
                  "the image is shrunk onto padding (smaller objects than at inference)")
      ->capture_default_str();
  cmd->add_option("--precision", o->precision,
                  "fp32, or bf16 (autocast for the network; assignment, loss and weights stay "
                  "fp32; fast on CPUs with AMX or AVX512-BF16)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--channels-last", o->channels_last,
                "channels-last (NHWC) weights and activations (faster oneDNN convolutions)");
  cmd->add_option("--force-topk", o->force_topk,
                  "give a gt too small to contain a location (under ~8 px) the K locations of "
                  "largest centre prior as candidates, as MMDetection's force_topk (0 = off, "
                  "the authors' behaviour; 9 is MMDetection's K)")
      ->capture_default_str();
  cmd->add_option("--reg-weight", o->reg_weight,
                  "add W x the mean over faces of the positive-weighted GIoU loss of their "
                  "assigned locations (not in the authors' loss, which learns boxes only inside "
                  "the bag probability; sharper boxes on small objects; 0 = off)")
      ->capture_default_str();
  cmd->add_flag("--ignore-regions", o->ignore_regions,
                "train the dataset's ignored objects (WIDER invalid faces, COCO crowds, VOC "
                "difficult) as ignore regions, with no background loss inside, instead of as "
                "background (the authors' behaviour)");
  cmd->add_option("--ignore-below", o->ignore_below,
                  "objects whose shorter side is under PX pixels at the network input (after "
                  "the crop) become ignore regions instead of objects (0 = off)")
      ->capture_default_str();
  cmd->add_flag("--ignore-cut", o->ignore_cut,
                "objects whose centre the crop leaves become ignore regions over their visible "
                "part instead of being dropped (which trains that part as background)");
  cmd->add_option("--ema", o->ema,
                  "keep an exponential moving average of the weights with this decay (e.g. "
                  "0.9995, about the last 2,000 steps) and write it as model.pt and the "
                  "snapshots (0 = off)")
      ->capture_default_str();
  cmd->add_option("--ema-ramp", o->ema_ramp,
                  "the average's decay ramps up as 1 - exp(-step / N) (YOLOX's 2000)")
      ->capture_default_str();
  cmd->add_flag("--no-hflip", *no_hflip, "no horizontal flips");
  cmd->add_flag("--colour-jitter", o->colour_jitter, "random brightness and contrast");
  cmd->add_flag("--quiet", o->quiet, "no progress output (the JSON log is still written)");
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
    opts.hflip = !*no_hflip;
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
