// Unit tests for rl310_preprocess, run by CTest. No framework: each CHECK prints the failing
// expression and the test exits non-zero. argv[1] is a scratch directory.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "rl310/eval_transform.h"
#include "rl310/image_files.h"
#include "rl310/infer_support.h"

namespace fs = std::filesystem;

namespace {

int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond "\n"; \
      ++failures;                                                            \
    }                                                                        \
  } while (0)

bool Throws(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception&) {
    return true;
  }
  return false;
}

bool Near(float a, float b) { return std::fabs(a - b) <= 1e-5f; }

void TestMakeEvalTransform() {
  CHECK(rl310::MakeEvalTransform(224).resize_short == 256);
  CHECK(rl310::MakeEvalTransform(32).resize_short == 37);  // round(36.57)
  CHECK(rl310::MakeEvalTransform(64).resize_short == 73);  // round(73.14)
  CHECK(rl310::MakeEvalTransform(64, 80).resize_short == 80);
  CHECK(Throws([] { rl310::MakeEvalTransform(0); }));
  CHECK(Throws([] { rl310::MakeEvalTransform(64, 63); }));
  const rl310::EvalTransform t = rl310::MakeEvalTransform(224);
  CHECK(Near(t.mean[0], 123.675f) && Near(t.mean[1], 116.28f) && Near(t.mean[2], 103.53f));
  CHECK(Near(t.std[0], 58.395f) && Near(t.std[1], 57.12f) && Near(t.std[2], 57.375f));
}

void TestResizedSize() {
  // Expected sizes are what MindSpore's vision.Resize(short_side) produced for these inputs.
  CHECK(rl310::ResizedSize(375, 500, 256) == cv::Size(341, 256));
  CHECK(rl310::ResizedSize(333, 500, 256) == cv::Size(384, 256));
  CHECK(rl310::ResizedSize(150, 100, 36) == cv::Size(36, 54));
  CHECK(rl310::ResizedSize(50, 77, 73) == cv::Size(112, 73));
  // Square: short / side * side in float32 would give 15 here; the long/short order gives 16.
  CHECK(rl310::ResizedSize(41, 41, 16) == cv::Size(16, 16));
  CHECK(Throws([] { rl310::ResizedSize(0, 10, 5); }));
}

void TestCenterCropRect() {
  CHECK(rl310::CenterCropRect(cv::Size(77, 75), 64) == cv::Rect(6, 5, 64, 64));  // floor
  CHECK(rl310::CenterCropRect(cv::Size(64, 64), 64) == cv::Rect(0, 0, 64, 64));
  CHECK(Throws([] { rl310::CenterCropRect(cv::Size(63, 80), 64); }));
}

void TestApplyEvalTransform() {
  const rl310::EvalTransform t = rl310::MakeEvalTransform(32, 40);
  // A 40x50 image (rows x cols) is not resized (short side already 40); the crop starts at
  // column 9, row 4. Each pixel encodes its position so we can see where values came from.
  cv::Mat rgb(40, 50, CV_8UC3);
  for (int y = 0; y < rgb.rows; ++y) {
    for (int x = 0; x < rgb.cols; ++x) {
      rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(y), static_cast<uchar>(x), 200);
    }
  }
  const std::vector<float> out = rl310::ApplyEvalTransform(rgb, t);
  CHECK(out.size() == 3u * 32 * 32);
  const size_t plane = 32 * 32;
  auto at = [&](int c, int y, int x) { return out[c * plane + y * 32 + x]; };
  auto norm = [&](int c, float v) { return (v - t.mean[c]) / t.std[c]; };
  CHECK(Near(at(0, 0, 0), norm(0, 4)));    // R = row 4
  CHECK(Near(at(1, 0, 0), norm(1, 9)));    // G = column 9
  CHECK(Near(at(2, 0, 0), norm(2, 200)));  // B constant
  CHECK(Near(at(0, 31, 5), norm(0, 35)));
  CHECK(Near(at(1, 31, 5), norm(1, 14)));

  // A flat image stays flat through resize and crop.
  const cv::Mat flat(90, 60, CV_8UC3, cv::Scalar(10, 128, 250));
  const std::vector<float> flat_out = rl310::ApplyEvalTransform(flat, t);
  bool all_equal = true;
  for (size_t i = 0; i < plane; ++i) {
    all_equal = all_equal && Near(flat_out[i], norm(0, 10)) &&
                Near(flat_out[plane + i], norm(1, 128)) &&
                Near(flat_out[2 * plane + i], norm(2, 250));
  }
  CHECK(all_equal);
  // BGR input with kBgr gives the same RGB-ordered tensor.
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  CHECK(rl310::ApplyEvalTransform(bgr, t, rl310::ChannelOrder::kBgr) == out);
  CHECK(Throws([&] { rl310::ApplyEvalTransform(cv::Mat(), t); }));
  CHECK(Throws([&] { rl310::ApplyEvalTransform(cv::Mat(40, 40, CV_8UC1), t); }));
}

void TestFilesAndDecode(const fs::path& scratch) {
  fs::remove_all(scratch);
  fs::create_directories(scratch / "val" / "class_b");
  fs::create_directories(scratch / "val" / "class_a");
  // OpenCV writes BGR: pure blue here must decode to RGB (0, 0, 255). PNG is lossless.
  const cv::Mat blue(8, 8, CV_8UC3, cv::Scalar(255, 0, 0));
  CHECK(cv::imwrite((scratch / "val" / "class_b" / "img_2.png").string(), blue));
  CHECK(cv::imwrite((scratch / "val" / "class_a" / "img_1.JPEG").string(), blue));
  std::ofstream(scratch / "val" / "class_a" / "notes.txt") << "not an image";

  const std::vector<std::string> images = rl310::ListImages((scratch / "val").string());
  CHECK(images.size() == 2);
  CHECK(images.size() == 2 && fs::path(images[0]).filename() == "img_1.JPEG");
  CHECK(images.size() == 2 && fs::path(images[1]).filename() == "img_2.png");

  // A class folder that is a symlink is followed.
  fs::create_directories(scratch / "linked");
  fs::create_directory_symlink(scratch / "val" / "class_b", scratch / "linked" / "class_b");
  const std::vector<std::string> linked = rl310::ListImages((scratch / "linked").string());
  CHECK(linked.size() == 1 && fs::path(linked[0]).filename() == "img_2.png");

  const cv::Mat decoded = rl310::DecodeRgb((scratch / "val" / "class_b" / "img_2.png").string());
  CHECK(decoded.type() == CV_8UC3 && decoded.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 0, 255));
  CHECK(Throws([&] { rl310::DecodeRgb((scratch / "val" / "class_a" / "notes.txt").string()); }));
  CHECK(Throws([&] { rl310::ListImages((scratch / "missing").string()); }));

  // Two images with one stem would share a result file.
  fs::create_directories(scratch / "dup" / "a");
  fs::create_directories(scratch / "dup" / "b");
  CHECK(cv::imwrite((scratch / "dup" / "a" / "same.png").string(), blue));
  CHECK(cv::imwrite((scratch / "dup" / "b" / "same.jpg").string(), blue));
  CHECK(Throws([&] { rl310::ListImages((scratch / "dup").string()); }));

  CHECK(rl310::ResultPath("out", "/data/val/n01/ILSVRC2012_val_00000001.JPEG", 0) ==
        "out/ILSVRC2012_val_00000001_0.bin");
  const std::string bin = (scratch / "made" / "deep").string();
  rl310::MakeDirs(bin);
  const float values[3] = {1.5f, -2.0f, 3.25f};
  rl310::WriteFloats(bin + "/v.bin", values, 3);
  std::ifstream in(bin + "/v.bin", std::ios::binary);
  float back[3] = {0, 0, 0};
  in.read(reinterpret_cast<char*>(back), sizeof(back));
  CHECK(in.gcount() == sizeof(back) && back[0] == 1.5f && back[1] == -2.0f && back[2] == 3.25f);
}

void TestCInterface(const fs::path& scratch) {
  char err[256] = {0};
  CHECK(rl310_list_images((scratch / "missing").c_str(), err, sizeof(err)) == nullptr);
  CHECK(std::string(err).find("missing") != std::string::npos);

  rl310_image_list* list = rl310_list_images((scratch / "val").c_str(), err, sizeof(err));
  CHECK(list != nullptr && rl310_image_count(list) == 2);
  CHECK(rl310_image_path(list, 2) == nullptr);

  std::vector<float> tensor(3 * 4 * 4, -1.0f);
  CHECK(rl310_preprocess_file(rl310_image_path(list, 1), 4, 0, tensor.data(), err,
                              sizeof(err)) == 0);
  const rl310::EvalTransform t = rl310::MakeEvalTransform(4);
  CHECK(Near(tensor[0], (0 - t.mean[0]) / t.std[0]));
  CHECK(Near(tensor[2 * 16], (255 - t.mean[2]) / t.std[2]));
  const std::string notes = (scratch / "val" / "class_a" / "notes.txt").string();
  CHECK(rl310_preprocess_file(notes.c_str(), 4, 0, tensor.data(), err, sizeof(err)) == 1);
  CHECK(std::string(err).find("notes.txt") != std::string::npos);
  CHECK(rl310_preprocess_file(rl310_image_path(list, 1), 4, 2, tensor.data(), err,
                              sizeof(err)) == 1);  // resize smaller than the crop

  const float logits[2] = {0.25f, 0.75f};
  const std::string out = (scratch / "result_Files").string();
  CHECK(rl310_make_dirs(out.c_str(), err, sizeof(err)) == 0);
  CHECK(rl310_write_result(out.c_str(), rl310_image_path(list, 0), 0, logits, 2, err,
                           sizeof(err)) == 0);
  CHECK(fs::file_size(scratch / "result_Files" / "img_1_0.bin") == 2 * sizeof(float));
  rl310_free_image_list(list);

  const double batch_ms[3] = {10.0, 20.0, 30.0};
  const rl310_timing timing = rl310_summarize_timing(batch_ms, 3, 12);
  CHECK(timing.batches == 3 && timing.images == 12);
  CHECK(std::fabs(timing.mean_batch_ms - 20.0) < 1e-9);
  CHECK(std::fabs(timing.mean_image_ms - 5.0) < 1e-9);
  CHECK(std::fabs(timing.images_per_second - 200.0) < 1e-9);
  const rl310_timing empty = rl310_summarize_timing(nullptr, 0, 0);
  CHECK(empty.mean_batch_ms == 0.0 && empty.images_per_second == 0.0);
  const std::string timing_file = (scratch / "time.txt").string();
  CHECK(rl310_write_timing(timing_file.c_str(), &timing, err, sizeof(err)) == 0);
  std::ifstream text(timing_file);
  const std::string content((std::istreambuf_iterator<char>(text)),
                            std::istreambuf_iterator<char>());
  CHECK(content.find("NN inference cost average time: 20.000 ms of infer_count 3") !=
        std::string::npos);
  CHECK(content.find("200.00 images/s") != std::string::npos);
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path scratch =
      argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "rl310_unittest";
  TestMakeEvalTransform();
  TestResizedSize();
  TestCenterCropRect();
  TestApplyEvalTransform();
  TestFilesAndDecode(scratch);
  TestCInterface(scratch);
  if (failures > 0) {
    std::cerr << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "rl310_preprocess_unittest: all checks passed\n";
  return 0;
}
