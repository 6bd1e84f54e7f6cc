// The evaluation transform of resnest.data.pipeline.eval_transforms, re-implemented with OpenCV so the Ascend 310
// program feeds the model the same tensor the Python evaluation does.
//
// Steps (all on 8-bit RGB until the last one): decode -> resize the short side to
// resize_short with bilinear interpolation (long side = floor(long / short * resize_short),
// computed in float32 like MindSpore's vision.Resize) -> centre crop crop_size x crop_size
// (offset = floor((size - crop) / 2), like vision.CenterCrop) -> (x - mean) / std with the
// ImageNet statistics scaled to 0..255 -> HWC to CHW float32.
#ifndef RL310_EVAL_TRANSFORM_H_
#define RL310_EVAL_TRANSFORM_H_

#include <array>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace rl310 {

struct EvalTransform {
  int crop_size = 224;
  int resize_short = 256;  // short side after the resize, before the centre crop
  std::array<float, 3> mean{0.485f * 255.0f, 0.456f * 255.0f, 0.406f * 255.0f};  // RGB
  std::array<float, 3> std{0.229f * 255.0f, 0.224f * 255.0f, 0.225f * 255.0f};   // RGB
};

// resize_short <= 0 selects the training code's default, round(crop_size / 0.875).
// Throws std::invalid_argument when crop_size < 1 or resize_short < crop_size.
EvalTransform MakeEvalTransform(int crop_size, int resize_short = 0);

// Size after resizing the short side of a rows x cols image to short_side.
cv::Size ResizedSize(int rows, int cols, int short_side);

// The crop_size x crop_size window in the centre of an image of the given size.
cv::Rect CenterCropRect(cv::Size size, int crop_size);

// Channel order of an 8-bit image in memory (OpenCV decodes to BGR).
enum class ChannelOrder { kRgb, kBgr };

// Decodes an image file to 8-bit BGR, OpenCV's native order (EXIF orientation ignored, as
// the Python decoders do). Throws std::runtime_error naming the file when it cannot be read
// or decoded.
cv::Mat DecodeBgr(const std::string& path);

// DecodeBgr converted to RGB.
cv::Mat DecodeRgb(const std::string& path);

// Applies the transform to an 8-bit 3-channel image; returns 3 * crop * crop floats, CHW,
// channels in RGB order whatever the input order (resizing is per channel, so taking BGR
// straight from the decoder and swapping while normalising saves a full-image pass).
std::vector<float> ApplyEvalTransform(const cv::Mat& image, const EvalTransform& transform,
                                      ChannelOrder order = ChannelOrder::kRgb);

// Same, writing into out (which must hold 3 * crop * crop floats).
void ApplyEvalTransform(const cv::Mat& image, const EvalTransform& transform, float* out,
                        ChannelOrder order = ChannelOrder::kRgb);

// Decode + transform of one file: what rl310_infer feeds the model.
void PreprocessFile(const std::string& path, const EvalTransform& transform, float* out);

}  // namespace rl310

#endif  // RL310_EVAL_TRANSFORM_H_
