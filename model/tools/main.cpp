// SPDX-License-Identifier: MIT
// autoassign: the command-line front end of the model library (info, init, bench; train,
// eval and detect share the same library).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <torch/torch.h>

#include "autoassign/core/default_model.h"
#include "autoassign/core/files.h"
#include "autoassign/core/types.h"
#include "autoassign/infer/checkpoint.h"
#include "autoassign/infer/detector.h"
#include "autoassign/train/average.h"
#include "autoassign/train/import.h"
#include "commands.h"

namespace autoassign::cli {
namespace {

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

}  // namespace

CLI::Option* add_model_option(CLI::App& cmd, std::string& value) {
  return cmd.add_option(
      kModelOption.flag, value,
      std::string(kModelOption.help) + "; default: " + default_model_description());
}

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print the configuration of a model file or preset");
  auto model = std::make_shared<std::string>();
  auto preset = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("model", *model, "model file (.pt); default: " + default_model_description());
  cmd->add_option("--preset", *preset,
                  "a built-in preset instead of a file (r50-fpn, r18-fpn, face-rt)");
  cmd->add_flag("--json", *json, "print the full config as JSON");
  cmd->callback([=] {
    if (!model->empty() && !preset->empty()) {
      throw CLI::ValidationError("info", "give MODEL or --preset, not both");
    }
    if (model->empty() && preset->empty()) *model = default_model().path;
    ModelConfig config = preset->empty() ? read_model_config(*model) : ModelConfig::preset(*preset);
    if (*json) {
      std::cout << config.to_json() << "\n";
      return;
    }
    AutoAssign net(config);
    const auto& c = config;
    std::cout << "source        " << (preset->empty() ? *model : "preset " + *preset) << "\n";
    if (preset->empty())
      std::cout << "format        " << kModelFormatTag << " v" << kModelFormatVersion
                << " (safetensors layout, data only)\n";
    std::cout << "name          " << c.name << "\n"
              << "classes       " << c.num_classes << ":";
    for (size_t i = 0; i < c.class_names.size() && i < 10; ++i)
      std::cout << " " << c.class_names[i];
    if (c.class_names.size() > 10) std::cout << " ...";
    std::cout << "\nbackbone      " << c.backbone.type << ", norm " << c.backbone.norm
              << ", freeze_at " << c.backbone.freeze_at << "\n"
              << "fpn           P" << c.fpn.levels.front() << "-P" << c.fpn.levels.back() << ", "
              << c.fpn.channels << " channels, strides " << join(c.strides()) << "\n"
              << "head          " << c.head.num_convs << " convs per tower, norm " << c.head.norm
              << "\n"
              << "input         "
              << (c.input.resize == "fit" ? "fit " + std::to_string(c.input.width) + "x" +
                                                std::to_string(c.input.height)
                                          : "short " + std::to_string(c.input.short_side) +
                                                " / long " + std::to_string(c.input.long_side))
              << ", " << c.input.channel_order << ", mean " << c.input.mean[0] << ","
              << c.input.mean[1] << "," << c.input.mean[2] << ", std " << c.input.std[0] << ","
              << c.input.std[1] << "," << c.input.std[2] << "\n"
              << "postprocess   score > " << c.postprocess.score_threshold << ", NMS IoU "
              << c.postprocess.nms_iou << ", top-k/level " << c.postprocess.topk_per_level
              << ", max " << c.postprocess.max_detections;
    if (c.postprocess.vote_iou > 0) std::cout << ", box voting IoU " << c.postprocess.vote_iou;
    std::cout << "\n"
              << "parameters    " << count_parameters(*net) << "\n";
    const auto f = cpu_features();
    auto yes = [](bool b) { return b ? "yes" : "no"; };
    std::cout << "precision     auto = " << resolve_precision("auto", "cpu")
              << " on this CPU (AVX-512 " << yes(f.avx512_core) << ", AVX512-BF16 "
              << yes(f.avx512_bf16) << ", AMX-BF16 " << yes(f.amx_bf16) << ")\n";
  });
}

void add_init(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Write an untrained (freshly initialised) model file from a preset or config");
  auto preset = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>();
  auto seed = std::make_shared<int64_t>(0);
  cmd->add_option("--preset", *preset, "built-in preset");
  cmd->add_option("--config", *config,
                  "model config JSON file (at most 1 MB, 8 levels of nesting, no repeated keys)");
  cmd->add_option("-o,--output", *output, "model file to write")->required();
  cmd->add_option("--seed", *seed, "random seed for the initial weights");
  cmd->callback([=] {
    if (preset->empty() == config->empty()) {
      throw CLI::ValidationError("init", "give exactly one of --preset or --config");
    }
    torch::manual_seed(static_cast<uint64_t>(*seed));
    AutoAssign net(preset->empty() ? ModelConfig::from_file(*config)
                                   : ModelConfig::preset(*preset));
    save_model(*output, net);
    std::cout << "wrote " << *output << "\n";
  });
}

}  // namespace autoassign::cli

namespace autoassign::cli {

void add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Convert a version-1 model file (a LibTorch archive) to the current format (data only). "
      "Reading a LibTorch archive runs the TorchScript inside it: convert only files you "
      "trust, such as your own; every other command reads the current format only");
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("old", *in, "version-1 model file (.pt)")->required();
  cmd->add_option("new", *out, "model file to write")->required();
  cmd->callback([=] {
    try {
      read_model_config(*in);
      throw CLI::ValidationError("convert", "'" + *in + "' is already in the current format");
    } catch (const ModelFileError& e) {
      if (e.kind() != ModelFileError::Kind::kVersion) throw;
    }
    auto model = load_legacy_model(*in);
    save_model(*out, model);
    // Read back through the strict loader: what was written is what every loader accepts.
    auto back = load_model(*out);
    std::cout << "converted " << *in << " (format v1, LibTorch archive) -> " << *out << " (format v"
              << kModelFormatVersion << ", " << back->config().name << ", "
              << count_parameters(*back) << " parameters)\n";
  });
}

void add_tune(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tune",
      "Copy a model file with new post-processing defaults (the ones detect, eval and the "
      "element start from); the weights are copied unchanged");
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  // Unset options keep the file's value: -1 is outside every valid range.
  auto threshold = std::make_shared<float>(-1.0f);
  auto nms_iou = std::make_shared<float>(-1.0f);
  auto vote_iou = std::make_shared<float>(-1.0f);
  auto max_det = std::make_shared<int>(-1);
  cmd->add_option("model", *in, "model file to read")->required();
  cmd->add_option("-o,--output", *out, "model file to write")->required();
  cmd->add_option("--threshold", *threshold, "score threshold, 0..1");
  cmd->add_option("--iou-threshold", *nms_iou, "NMS IoU, (0, 1]");
  cmd->add_option("--vote-iou", *vote_iou,
                  "box voting after NMS: a kept box becomes the score-weighted mean of the "
                  "candidates overlapping it by at least this IoU (0 = off)");
  cmd->add_option("--max-detections", *max_det, "detections per image");
  cmd->callback([=] {
    auto model = load_model(*in);
    PostprocessConfig p = model->config().postprocess;
    if (*threshold != -1.0f) p.score_threshold = *threshold;
    if (*nms_iou != -1.0f) p.nms_iou = *nms_iou;
    if (*vote_iou != -1.0f) p.vote_iou = *vote_iou;
    if (*max_det != -1) p.max_detections = *max_det;
    try {
      model->set_postprocess(p);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("tune", e.what());
    }
    save_model(*out, model);
    const auto& q = load_model(*out)->config().postprocess;  // what every loader accepts
    std::cout << "wrote " << *out << ": score > " << q.score_threshold << ", NMS IoU " << q.nms_iou
              << ", box voting IoU " << q.vote_iou << " (0 = off), max " << q.max_detections
              << "\n";
  });
}

void add_average(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "average",
      "Write the weighted mean of several model files of one architecture (a model soup: e.g. "
      "cycles fine-tuned from one model with other seeds or recipes); same network, same speed");
  auto ins = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  auto weights = std::make_shared<std::vector<double>>();
  cmd->add_option("models", *ins, "two or more model files (post-processing from the first)")
      ->required();
  cmd->add_option("-o,--output", *out, "model file to write")->required();
  cmd->add_option("--weights", *weights,
                  "one weight > 0 per model file, comma-separated, normalised to sum 1 "
                  "(default: equal)")
      ->delimiter(',');
  cmd->callback([=] {
    AutoAssign model{nullptr};
    try {
      model = average_models(*ins, *weights);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("average", e.what());
    }
    save_model(*out, model);
    auto back = load_model(*out);  // what every loader accepts
    std::cout << "wrote " << *out << ": the mean of " << ins->size() << " files ("
              << back->config().name << ", " << count_parameters(*back) << " parameters)\n";
  });
}

void add_import(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import",
      "Write a model file from a published PyTorch checkpoint (read as data: no code runs): "
      "MMDetection's or the authors' (cvpods) AutoAssign R-50 FPN, or torchvision ResNet "
      "ImageNet weights (backbone only, with --allow-missing, to start training from)");
  auto from = std::make_shared<std::string>();
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>("r50-fpn");
  auto classes = std::make_shared<std::string>();
  auto allow_missing = std::make_shared<bool>(false);
  auto post = std::make_shared<std::string>();
  cmd->add_option("--from", *from, "mmdet, cvpods or torchvision")->required();
  cmd->add_option("checkpoint", *in, "the .pth file (torch.save, PyTorch 1.6 or later)")
      ->required();
  cmd->add_option("-o,--output", *out, "model file to write")->required();
  cmd->add_option("--config", *config,
                  "preset name or config JSON of the architecture to fill (default r50-fpn)");
  cmd->add_option("--classes", *classes,
                  "file with one class name per line, at most 16 MB (default: COCO's 80 for an "
                  "80-class head)");
  cmd->add_flag("--allow-missing", *allow_missing,
                "keep the initialisation of model tensors the checkpoint lacks (and list them)");
  cmd->add_option("--post", *post,
                  "post-processing order written into the model: cvpods (the authors': top-k on "
                  "cls x obj, then the threshold) or mmdet (MMDetection 2.12's: top-k locations, "
                  "threshold on cls alone); default: the source's own (mmdet for --from mmdet)")
      ->check(CLI::IsMember({"cvpods", "mmdet"}));
  cmd->callback([=] {
    ImportOptions o;
    o.post = *post;
    o.from = parse_import_source(*from);
    const auto presets = ModelConfig::preset_names();
    o.config = std::find(presets.begin(), presets.end(), *config) != presets.end()
                   ? ModelConfig::preset(*config)
                   : ModelConfig::from_file(*config);
    if (!classes->empty()) {
      std::vector<std::string> warnings;
      o.class_names = read_labels_file(*classes, &warnings);
      for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
    }
    o.allow_missing = *allow_missing;
    const auto t0 = std::chrono::steady_clock::now();
    ImportReport report;
    auto model = import_checkpoint(*in, o, &report);
    save_model(*out, model);
    auto back = load_model(*out);  // what every loader accepts
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "imported " << report.keys << " keys of " << *in << " (" << *from << ") -> "
              << *out << ": " << back->config().name << ", " << back->config().num_classes
              << " classes, " << count_parameters(*back) << " parameters, " << s << " s\n";
    if (!report.dropped.empty()) {
      std::cout << "  dropped by design: " << report.dropped.size()
                << " keys (BatchNorm batch counters, the ImageNet classifier)\n";
    }
    if (!report.left_initialised.empty()) {
      std::cout << "  left initialised (not in the checkpoint): " << report.left_initialised.size()
                << " tensors, e.g. " << report.left_initialised.front() << "\n";
    }
    for (const auto& n : report.notes) std::cout << "  note: " << n << "\n";
  });
}

}  // namespace autoassign::cli

int main(int argc, char** argv) {
  CLI::App app{
      "autoassign: AutoAssign object detection (LibTorch) - model info, training, evaluation, "
      "detection and benchmarks.\nRun 'autoassign COMMAND --help' for a command's options."};
  app.require_subcommand(1);
  autoassign::cli::add_info(app);
  autoassign::cli::add_init(app);
  autoassign::cli::add_train(app);
  autoassign::cli::add_detect(app);
  autoassign::cli::add_eval(app);
  autoassign::cli::add_bench(app);
  autoassign::cli::add_convert(app);
  autoassign::cli::add_import(app);
  autoassign::cli::add_tune(app);
  autoassign::cli::add_average(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const autoassign::ModelFileError& e) {
    std::cerr << "autoassign: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "autoassign: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "autoassign: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
