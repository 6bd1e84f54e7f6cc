// rl310_preprocess_dump: runs the evaluation transform on every image of a folder and writes
// one raw float32 CHW tensor per image, <output-dir>/<image stem>.bin. It lets the tests
// compare the C++ preprocessing with the Python one, and can feed other runtimes.
#include <cstdio>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_flags.h"
#include "rl310/eval_transform.h"
#include "rl310/image_files.h"

namespace {

constexpr const char* kUsage =
    "usage: rl310_preprocess_dump --input-dir DIR --output-dir DIR --crop-size N "
    "[--resize-size N]\n"
    "  writes OUTPUT/<image stem>.bin: float32, 3 x N x N (CHW), normalised with the ImageNet\n"
    "  mean/std after resizing the short side to --resize-size (default round(N / 0.875)) and a\n"
    "  centre crop.\n";

}  // namespace

int main(int argc, char** argv) {
  rl310::EvalTransform transform;
  std::string input_dir;
  std::string output_dir;
  try {
    const rl310::CliFlags flags(
        argc, argv,
        {{"input-dir", ""}, {"output-dir", ""}, {"crop-size", "224"}, {"resize-size", "0"}});
    if (flags.help()) {
      std::cout << kUsage;
      return 0;
    }
    input_dir = flags.Get("input-dir");
    output_dir = flags.Get("output-dir");
    transform = rl310::MakeEvalTransform(flags.GetInt("crop-size", 1, 8192),
                                         flags.GetInt("resize-size", 0, 16384));
  } catch (const std::exception& e) {
    std::cerr << "rl310_preprocess_dump: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    const std::vector<std::string> images = rl310::ListImages(input_dir);
    if (images.empty()) {
      throw std::runtime_error("no .jpeg/.jpg/.png/.bmp images under " + input_dir);
    }
    rl310::MakeDirs(output_dir);
    std::vector<float> tensor(3 * static_cast<size_t>(transform.crop_size) * transform.crop_size);
    for (const auto& image : images) {
      rl310::PreprocessFile(image, transform, tensor.data());
      rl310::WriteFloats(rl310::StemPath(output_dir, image, ".bin"), tensor.data(),
                         tensor.size());
    }
    std::printf("preprocessed %zu images into %s: float32 3x%dx%d CHW (resize short side to %d)\n",
                images.size(), output_dir.c_str(), transform.crop_size, transform.crop_size,
                transform.resize_short);
  } catch (const std::exception& e) {
    std::cerr << "rl310_preprocess_dump: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
