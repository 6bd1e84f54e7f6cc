#include "rl310/eval_transform.h"

#include <cmath>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace rl310 {

EvalTransform MakeEvalTransform(int crop_size, int resize_short) {
  if (crop_size < 1) {
    throw std::invalid_argument("crop size must be >= 1, got " + std::to_string(crop_size));
  }
  EvalTransform transform;
  transform.crop_size = crop_size;
  // resnest.data.pipeline.eval_transforms: round(crop / 0.875). crop * 8 / 7 never ends in
  // exactly .5, so Python's round-half-even and lround agree.
  transform.resize_short =
      resize_short > 0 ? resize_short
                       : static_cast<int>(std::lround(static_cast<double>(crop_size) / 0.875));
  if (transform.resize_short < crop_size) {
    throw std::invalid_argument("resize size " + std::to_string(transform.resize_short) +
                                " is smaller than the crop size " + std::to_string(crop_size));
  }
  // Computed in double and rounded once, as Python hands 0.485 * 255 etc. to MindSpore.
  const double mean[3] = {0.485, 0.456, 0.406};
  const double stddev[3] = {0.229, 0.224, 0.225};
  for (int c = 0; c < 3; ++c) {
    transform.mean[c] = static_cast<float>(mean[c] * 255.0);
    transform.std[c] = static_cast<float>(stddev[c] * 255.0);
  }
  return transform;
}

cv::Size ResizedSize(int rows, int cols, int short_side) {
  if (rows < 1 || cols < 1 || short_side < 1) {
    throw std::invalid_argument("image and target sizes must be positive");
  }
  // float32 arithmetic in this exact order: it is what MindSpore's vision.Resize does, and
  // the order matters (s / short * long is one pixel short for some square images).
  if (rows < cols) {
    const float ratio = static_cast<float>(cols) / static_cast<float>(rows);
    return {static_cast<int>(std::floor(ratio * static_cast<float>(short_side))), short_side};
  }
  const float ratio = static_cast<float>(rows) / static_cast<float>(cols);
  return {short_side, static_cast<int>(std::floor(ratio * static_cast<float>(short_side)))};
}

cv::Rect CenterCropRect(cv::Size size, int crop_size) {
  if (crop_size > size.width || crop_size > size.height) {
    throw std::invalid_argument("crop " + std::to_string(crop_size) + " does not fit in " +
                                std::to_string(size.width) + "x" + std::to_string(size.height));
  }
  return {(size.width - crop_size) / 2, (size.height - crop_size) / 2, crop_size, crop_size};
}

cv::Mat DecodeBgr(const std::string& path) {
  // IGNORE_ORIENTATION: Pillow and MindSpore's Decode do not rotate by EXIF, so neither may we.
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) {
    throw std::runtime_error("cannot read or decode image " + path);
  }
  return bgr;
}

cv::Mat DecodeRgb(const std::string& path) {
  cv::Mat rgb;
  cv::cvtColor(DecodeBgr(path), rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

void ApplyEvalTransform(const cv::Mat& image, const EvalTransform& transform, float* out,
                        ChannelOrder order) {
  if (image.empty() || image.type() != CV_8UC3) {
    throw std::invalid_argument("expected a non-empty 8-bit 3-channel image");
  }
  const cv::Size resized_size = ResizedSize(image.rows, image.cols, transform.resize_short);
  cv::Mat resized;
  // INTER_LINEAR, not INTER_AREA: MindSpore's vision.Resize (Inter.LINEAR) is cv::resize with
  // INTER_LINEAR, so this reproduces the Python evaluation pixel for pixel.
  cv::resize(image, resized, resized_size, 0.0, 0.0, cv::INTER_LINEAR);
  const cv::Mat crop = resized(CenterCropRect(resized.size(), transform.crop_size));

  // One channel plane at a time so the writes are sequential (HWC -> CHW).
  const int side = transform.crop_size;
  for (int c = 0; c < 3; ++c) {
    const float mean = transform.mean[c];
    const float stddev = transform.std[c];
    float* plane = out + static_cast<std::size_t>(c) * side * side;
    for (int y = 0; y < side; ++y) {
      const auto* row = crop.ptr<uchar>(y) + (order == ChannelOrder::kBgr ? 2 - c : c);
      float* dst = plane + static_cast<std::size_t>(y) * side;
      for (int x = 0; x < side; ++x) {
        // Division, not multiplication by 1/std: the same rounding as MindSpore's Normalize.
        dst[x] = (static_cast<float>(row[3 * x]) - mean) / stddev;
      }
    }
  }
}

std::vector<float> ApplyEvalTransform(const cv::Mat& image, const EvalTransform& transform,
                                      ChannelOrder order) {
  std::vector<float> out(3 * static_cast<std::size_t>(transform.crop_size) * transform.crop_size);
  ApplyEvalTransform(image, transform, out.data(), order);
  return out;
}

void PreprocessFile(const std::string& path, const EvalTransform& transform, float* out) {
  ApplyEvalTransform(DecodeBgr(path), transform, out, ChannelOrder::kBgr);
}

}  // namespace rl310
