// SPDX-License-Identifier: MIT
// CPU frames go through OpenCV: resize in the source format first (so the cost follows the
// network's input size, not the camera's), then one colour conversion at the small size. YUV
// planes are resized separately, which commutes with the affine YUV->RGB conversion up to
// rounding. Frames on a CUDA device go through the torch path (tensor ops only, no host copy).
#include "autoassign/infer/preprocess.h"

#include <cmath>
#include <cstring>

#include <opencv2/imgproc.hpp>

namespace autoassign {
namespace {

cv::Mat wrap(const std::uint8_t* data, int w, int h, int type, int stride) {
  return cv::Mat(h, w, type, const_cast<std::uint8_t*>(data), static_cast<size_t>(stride));
}

// YUV -> RGB for the frame's colorimetry: R = ys (Y - y0) + cr_r (V - 128), G = ys (Y - y0) +
// cb_g (U - 128) + cr_g (V - 128), B = ys (Y - y0) + cb_b (U - 128).
struct YuvCoefficients {
  double ys, y0, cr_r, cb_g, cr_g, cb_b;
};

YuvCoefficients yuv_coefficients(YuvMatrix matrix, bool full_range) {
  if (matrix == YuvMatrix::kBT601 && !full_range) {
    // BT.601 limited range ("video range"): exactly the matrix of OpenCV's
    // COLOR_YUV2RGB_NV12 and GStreamer's default for SD.
    return {1.164, 16.0, 1.596, -0.391, -0.813, 2.018};
  }
  // From the standard's luma weights: BT.601 (0.299, 0.114), BT.709 (0.2126, 0.0722),
  // BT.2020 (0.2627, 0.0593). Limited range: luma 16-235, chroma 16-240.
  const double kr = matrix == YuvMatrix::kBT709    ? 0.2126
                    : matrix == YuvMatrix::kBT2020 ? 0.2627
                                                   : 0.299;
  const double kb = matrix == YuvMatrix::kBT709    ? 0.0722
                    : matrix == YuvMatrix::kBT2020 ? 0.0593
                                                   : 0.114;
  const double kg = 1.0 - kr - kb;
  const double ys = full_range ? 1.0 : 255.0 / 219.0, cs = full_range ? 1.0 : 255.0 / 224.0;
  return {ys,
          full_range ? 0.0 : 16.0,
          2 * (1 - kr) * cs,
          -2 * kb * (1 - kb) / kg * cs,
          -2 * kr * (1 - kr) / kg * cs,
          2 * (1 - kb) * cs};
}

// The same as a 3x4 affine matrix over (Y, U, V, 1) for cv::transform, rows in output order.
cv::Matx34f yuv_matrix(const YuvCoefficients& k, bool rgb) {
  const double rows[3][3] = {{k.ys, 0.0, k.cr_r}, {k.ys, k.cb_g, k.cr_g}, {k.ys, k.cb_b, 0.0}};
  cv::Matx34f m;
  for (int r = 0; r < 3; ++r) {
    const int row = rgb ? r : 2 - r;
    const auto& c = rows[r];
    m(row, 0) = static_cast<float>(c[0]);
    m(row, 1) = static_cast<float>(c[1]);
    m(row, 2) = static_cast<float>(c[2]);
    m(row, 3) = static_cast<float>(-k.y0 * c[0] - 128 * c[1] - 128 * c[2]);
  }
  return m;
}

// The same conversion on tensors, for the device path.
torch::Tensor yuv_to_rgb(const YuvCoefficients& k, const torch::Tensor& y, const torch::Tensor& u,
                         const torch::Tensor& v) {
  auto yy = (y - k.y0) * k.ys;
  auto uu = u - 128.0, vv = v - 128.0;
  auto r = yy + k.cr_r * vv;
  auto g = yy + k.cb_g * uu + k.cr_g * vv;
  auto b = yy + k.cb_b * uu;
  return torch::stack({r, g, b}, 0).clamp(0, 255);  // [3, H, W]
}

}  // namespace

Preprocessor::Preprocessor(const InputConfig& config) : config_(config) {}

std::pair<int, int> Preprocessor::scaled_size(int width, int height) const {
  if (width < 1 || height < 1) {
    throw std::invalid_argument("image size must be positive, got " + std::to_string(width) + "x" +
                                std::to_string(height));
  }
  double s;
  if (config_.resize == "fit") {
    s = std::min(static_cast<double>(config_.width) / width,
                 static_cast<double>(config_.height) / height);
  } else {
    s = static_cast<double>(config_.short_side) / std::min(width, height);
    if (std::max(width, height) * s > config_.long_side) {
      s = static_cast<double>(config_.long_side) / std::max(width, height);
    }
  }
  int w = std::max(1, static_cast<int>(std::lround(width * s)));
  int h = std::max(1, static_cast<int>(std::lround(height * s)));
  if (config_.resize == "fit") {
    w = std::min(w, config_.width);
    h = std::min(h, config_.height);
  }
  return {w, h};
}

std::pair<int, int> Preprocessor::padded_size(int max_w, int max_h) const {
  if (config_.resize == "fit") return {config_.width, config_.height};
  const int d = config_.size_divisor;
  return {(max_w + d - 1) / d * d, (max_h + d - 1) / d * d};
}

torch::Tensor Preprocessor::resize_to_u8(const ImageView& im, int ow, int oh) const {
  im.validate();
  const bool rgb = config_.channel_order == "RGB";
  const int w = im.width, h = im.height;
  cv::Mat out;
  switch (im.format) {
    case PixelFormat::kRGB:
    case PixelFormat::kBGR: {
      cv::Mat small;
      cv::resize(wrap(im.planes[0], w, h, CV_8UC3, im.strides[0]), small, cv::Size(ow, oh), 0, 0,
                 cv::INTER_LINEAR);
      const bool same = rgb == (im.format == PixelFormat::kRGB);
      if (same) {
        out = small;
      } else {
        cv::cvtColor(small, out, cv::COLOR_RGB2BGR);  // a channel swap either way
      }
      break;
    }
    case PixelFormat::kRGBx:
    case PixelFormat::kRGBA:
    case PixelFormat::kBGRx:
    case PixelFormat::kBGRA: {
      cv::Mat small;
      cv::resize(wrap(im.planes[0], w, h, CV_8UC4, im.strides[0]), small, cv::Size(ow, oh), 0, 0,
                 cv::INTER_LINEAR);
      const bool src_rgb = im.format == PixelFormat::kRGBx || im.format == PixelFormat::kRGBA;
      cv::cvtColor(small, out, src_rgb == rgb ? cv::COLOR_RGBA2RGB : cv::COLOR_RGBA2BGR);
      break;
    }
    case PixelFormat::kGRAY8: {
      cv::Mat small;
      cv::resize(wrap(im.planes[0], w, h, CV_8UC1, im.strides[0]), small, cv::Size(ow, oh), 0, 0,
                 cv::INTER_LINEAR);
      cv::cvtColor(small, out, cv::COLOR_GRAY2BGR);
      break;
    }
    case PixelFormat::kNV12:
    case PixelFormat::kI420: {
      // Each plane is resized to the output size (chroma keeps all the resolution the output
      // can show), then one affine BT.601 transform per pixel, saturating to 8 bits.
      const int cw = (w + 1) / 2, ch = (h + 1) / 2;
      std::vector<cv::Mat> yuv(3);
      cv::resize(wrap(im.planes[0], w, h, CV_8UC1, im.strides[0]), yuv[0], cv::Size(ow, oh), 0, 0,
                 cv::INTER_LINEAR);
      if (im.format == PixelFormat::kNV12) {
        cv::Mat uv;
        cv::resize(wrap(im.planes[1], cw, ch, CV_8UC2, im.strides[1]), uv, cv::Size(ow, oh), 0, 0,
                   cv::INTER_LINEAR);
        std::vector<cv::Mat> parts;
        cv::split(uv, parts);
        yuv[1] = parts[0];
        yuv[2] = parts[1];
      } else {
        cv::resize(wrap(im.planes[1], cw, ch, CV_8UC1, im.strides[1]), yuv[1], cv::Size(ow, oh), 0,
                   0, cv::INTER_LINEAR);
        cv::resize(wrap(im.planes[2], cw, ch, CV_8UC1, im.strides[2]), yuv[2], cv::Size(ow, oh), 0,
                   0, cv::INTER_LINEAR);
      }
      cv::Mat merged;
      cv::merge(yuv, merged);
      cv::transform(merged, out, yuv_matrix(yuv_coefficients(im.matrix, im.full_range), rgb));
      break;
    }
  }
  if (!out.isContinuous()) out = out.clone();
  auto t = torch::from_blob(out.data, {oh, ow, 3}, torch::kUInt8).clone();
  return t;
}

void Preprocessor::normalise_into(const torch::Tensor& hwc, torch::Tensor dst) const {
  normalise_chw_into(hwc.permute({2, 0, 1}).to(dst.device(), torch::kFloat), dst);
}

void Preprocessor::normalise_chw_into(const torch::Tensor& chw, torch::Tensor dst) const {
  const int64_t h = chw.size(1), w = chw.size(2);
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(dst.device());
  auto mean = torch::tensor({config_.mean[0], config_.mean[1], config_.mean[2]}, opts);
  auto std = torch::tensor({config_.std[0], config_.std[1], config_.std[2]}, opts);
  dst.narrow(1, 0, h).narrow(2, 0, w).copy_((chw - mean.view({3, 1, 1})) / std.view({3, 1, 1}));
}

namespace {

// The device path: frames already on a GPU stay there. Returns float [3, oh, ow] in 0..255 in
// the network's channel order.
torch::Tensor tensor_resize(const ImageView& im, int ow, int oh, bool rgb,
                            const torch::Device& device) {
  auto opts = torch::TensorOptions().dtype(torch::kUInt8).device(torch_device(im.device));
  auto plane = [&](int i, int64_t h, int64_t w, int64_t c) {
    return torch::from_blob(const_cast<std::uint8_t*>(im.planes[i]), {h, w, c},
                            {im.strides[i], c, 1}, opts)
        .to(torch::kFloat);
  };
  const int64_t w = im.width, h = im.height;
  torch::Tensor chw;  // [3, h, w] RGB
  switch (im.format) {
    case PixelFormat::kRGB:
    case PixelFormat::kRGBx:
    case PixelFormat::kRGBA:
      chw = plane(0, h, w, pixel_format_bytes_per_pixel(im.format))
                .narrow(2, 0, 3)
                .permute({2, 0, 1});
      break;
    case PixelFormat::kBGR:
    case PixelFormat::kBGRx:
    case PixelFormat::kBGRA:
      chw = plane(0, h, w, pixel_format_bytes_per_pixel(im.format))
                .narrow(2, 0, 3)
                .flip({2})
                .permute({2, 0, 1});
      break;
    case PixelFormat::kGRAY8:
      chw = plane(0, h, w, 1).permute({2, 0, 1}).expand({3, h, w});
      break;
    case PixelFormat::kNV12:
    case PixelFormat::kI420: {
      auto y = plane(0, h, w, 1).select(2, 0);
      const int64_t ch = (h + 1) / 2, cw = (w + 1) / 2;
      torch::Tensor u, v;
      if (im.format == PixelFormat::kNV12) {
        auto uv = plane(1, ch, cw, 2);
        u = uv.select(2, 0);
        v = uv.select(2, 1);
      } else {
        u = plane(1, ch, cw, 1).select(2, 0);
        v = plane(2, ch, cw, 1).select(2, 0);
      }
      auto up = [&](const torch::Tensor& c) {
        return c.repeat_interleave(2, 0).repeat_interleave(2, 1).narrow(0, 0, h).narrow(1, 0, w);
      };
      chw = yuv_to_rgb(yuv_coefficients(im.matrix, im.full_range), y, up(u), up(v));
      break;
    }
  }
  if (!rgb) chw = chw.flip({0});
  namespace F = torch::nn::functional;
  return F::interpolate(chw.unsqueeze(0), F::InterpolateFuncOptions()
                                              .size(std::vector<int64_t>{oh, ow})
                                              .mode(torch::kBilinear)
                                              .align_corners(false))
      .squeeze(0)
      .to(device);
}

}  // namespace

torch::Tensor Preprocessor::resize_on_device(const ImageView& image, int out_w, int out_h,
                                             const torch::Device& device) const {
  image.validate();
  return tensor_resize(image, out_w, out_h, config_.channel_order == "RGB", device);
}

torch::Tensor Preprocessor::operator()(const ImageView& image, ImageGeometry* geometry,
                                       const torch::Device& device) const {
  std::vector<ImageGeometry> g;
  auto t = batch({image}, &g, device).squeeze(0);
  if (geometry) *geometry = g[0];
  return t;
}

torch::Tensor Preprocessor::batch(const std::vector<ImageView>& images,
                                  std::vector<ImageGeometry>* geometry,
                                  const torch::Device& device) const {
  if (images.empty()) throw std::invalid_argument("Preprocessor: empty batch");
  std::vector<std::pair<int, int>> sizes;
  int max_w = 0, max_h = 0;
  for (const auto& im : images) {
    im.validate();
    sizes.push_back(scaled_size(im.width, im.height));
    max_w = std::max(max_w, sizes.back().first);
    max_h = std::max(max_h, sizes.back().second);
  }
  const auto [pw, ph] = padded_size(max_w, max_h);
  // Zero padding after normalisation, as the paper's ImageList.
  auto out = torch::zeros({static_cast<int64_t>(images.size()), 3, ph, pw},
                          torch::TensorOptions().dtype(torch::kFloat).device(device));
  if (geometry) geometry->clear();
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& im = images[i];
    const auto [w, h] = sizes[i];
    if (im.device.is_cuda()) {
      normalise_chw_into(resize_on_device(im, w, h, out.device()), out[i]);
    } else {
      normalise_into(resize_to_u8(im, w, h), out[i]);
    }
    if (geometry) {
      geometry->push_back({im.width, im.height, static_cast<double>(w) / im.width,
                           static_cast<double>(h) / im.height});
    }
  }
  return out;
}

}  // namespace autoassign
