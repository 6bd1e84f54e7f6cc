// rl310_infer: runs an exported ResNeSt MINDIR on an Ascend 310 with MindSpore's C++
// inference API and writes one logits file per image (<output_dir>/<stem>_0.bin, float32),
// which `python -m resnest.postprocess` turns into top-1/top-5 accuracy.
//
// Built only where the MindSpore inference package is installed (see CMakeLists.txt). It may
// be compiled with the old libstdc++ string ABI, so everything OpenCV- or filesystem-related
// goes through the C interface in rl310/infer_support.h.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_flags.h"
#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "rl310/infer_support.h"

namespace {

constexpr const char* kUsage =
    "usage: rl310_infer --mindir_path FILE --dataset_path DIR [--device_id N] [--batch_size B]\n"
    "                   [--output_dir DIR] [--timing_file FILE] [--resize_size N]\n"
    "                   [--precision_mode MODE]\n"
    "  Images under DIR (sorted; sub-folders included) go through the evaluation transform,\n"
    "  B at a time (B must equal the batch the MINDIR was exported with), and each image's\n"
    "  logits land in OUTPUT_DIR/<stem>_0.bin (default result_Files/). Timing statistics go to\n"
    "  --timing_file (default time_Result/test_perform_static.txt).\n";

constexpr size_t kErrLen = 1024;

void CheckC(int rc, const char* err) {
  if (rc != 0) {
    throw std::runtime_error(err);
  }
}

std::string ParentDir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

class ImageList {
 public:
  explicit ImageList(const std::string& dir) {
    char err[kErrLen] = {0};
    list_ = rl310_list_images(dir.c_str(), err, sizeof(err));
    if (list_ == nullptr) {
      throw std::runtime_error(err);
    }
  }
  ~ImageList() { rl310_free_image_list(list_); }
  ImageList(const ImageList&) = delete;
  ImageList& operator=(const ImageList&) = delete;

  size_t size() const { return rl310_image_count(list_); }
  const char* operator[](size_t index) const { return rl310_image_path(list_, index); }

 private:
  rl310_image_list* list_ = nullptr;
};

struct InputSpec {
  std::string name;
  std::vector<int64_t> shape;  // [batch, 3, crop, crop]
};

InputSpec CheckModelInput(mindspore::Model* model, int batch_size) {
  const std::vector<mindspore::MSTensor> inputs = model->GetInputs();
  if (inputs.size() != 1) {
    throw std::runtime_error("expected a model with one input, got " +
                             std::to_string(inputs.size()));
  }
  const mindspore::MSTensor& input = inputs[0];
  const std::vector<int64_t> shape = input.Shape();
  if (shape.size() != 4 || shape[1] != 3 || shape[2] != shape[3] || shape[2] < 1) {
    throw std::runtime_error("expected a model input of shape [B, 3, S, S]");
  }
  if (input.DataType() != mindspore::DataType::kNumberTypeFloat32) {
    throw std::runtime_error("expected a float32 model input");
  }
  if (shape[0] != batch_size) {
    throw std::runtime_error("--batch_size=" + std::to_string(batch_size) +
                             " but the MINDIR was exported with batch " +
                             std::to_string(shape[0]) + "; pass --batch_size=" +
                             std::to_string(shape[0]) + " or export again");
  }
  return {input.Name(), shape};
}

int Run(const rl310::CliFlags& flags) {
  const std::string mindir_path = flags.Get("mindir_path");
  const std::string dataset_path = flags.Get("dataset_path");
  const std::string output_dir = flags.Get("output_dir");
  const std::string timing_file = flags.Get("timing_file");
  const int device_id = flags.GetInt("device_id", 0, 1023);
  const int batch_size = flags.GetInt("batch_size", 1, 4096);
  const int resize_size = flags.GetInt("resize_size", 0, 16384);
  const std::string precision_mode = flags.Get("precision_mode");

  const ImageList images(dataset_path);
  if (images.size() == 0) {
    throw std::runtime_error("no .jpeg/.jpg/.png/.bmp images under " + dataset_path);
  }

  auto context = std::make_shared<mindspore::Context>();
  auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
  ascend->SetDeviceID(static_cast<uint32_t>(device_id));
  if (precision_mode != "default") {
    ascend->SetPrecisionMode(precision_mode);
  }
  // Logits come back as float32 whatever precision the device computes in.
  ascend->SetOutputType(mindspore::DataType::kNumberTypeFloat32);
  context->MutableDeviceInfo().push_back(ascend);

  mindspore::Graph graph;
  mindspore::Status status =
      mindspore::Serialization::Load(mindir_path, mindspore::ModelType::kMindIR, &graph);
  if (status != mindspore::kSuccess) {
    throw std::runtime_error("cannot load MINDIR " + mindir_path + ": " + status.ToString());
  }
  mindspore::Model model;
  status = model.Build(mindspore::GraphCell(graph), context);
  if (status != mindspore::kSuccess) {
    throw std::runtime_error("cannot build the model on Ascend device " +
                             std::to_string(device_id) + ": " + status.ToString());
  }
  const InputSpec input = CheckModelInput(&model, batch_size);
  const int crop = static_cast<int>(input.shape[2]);
  const size_t image_floats = 3 * static_cast<size_t>(crop) * crop;

  char err[kErrLen] = {0};
  CheckC(rl310_make_dirs(output_dir.c_str(), err, sizeof(err)), err);
  CheckC(rl310_make_dirs(ParentDir(timing_file).c_str(), err, sizeof(err)), err);

  std::vector<float> batch(image_floats * batch_size);
  std::vector<double> batch_ms;
  for (size_t first = 0; first < images.size(); first += batch_size) {
    const size_t count = std::min<size_t>(batch_size, images.size() - first);
    // The model has a fixed batch: a short last batch is padded with zeros and the padding's
    // outputs are dropped.
    std::fill(batch.begin(), batch.end(), 0.0f);
    for (size_t i = 0; i < count; ++i) {
      CheckC(rl310_preprocess_file(images[first + i], crop, resize_size,
                                   batch.data() + i * image_floats, err, sizeof(err)),
             err);
    }
    std::vector<mindspore::MSTensor> inputs;
    inputs.emplace_back(input.name, mindspore::DataType::kNumberTypeFloat32, input.shape,
                        batch.data(), batch.size() * sizeof(float));
    std::vector<mindspore::MSTensor> outputs;
    const auto start = std::chrono::steady_clock::now();
    status = model.Predict(inputs, &outputs);
    const auto end = std::chrono::steady_clock::now();
    if (status != mindspore::kSuccess || outputs.empty()) {
      throw std::runtime_error(std::string("predict failed on the batch starting at ") +
                               images[first] + ": " + status.ToString());
    }
    batch_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());

    const mindspore::MSTensor& logits = outputs[0];
    if (logits.DataType() != mindspore::DataType::kNumberTypeFloat32 ||
        logits.ElementNum() % batch_size != 0) {
      throw std::runtime_error("expected float32 logits of shape [B, classes]");
    }
    const size_t classes = static_cast<size_t>(logits.ElementNum() / batch_size);
    const auto data = std::static_pointer_cast<const float>(logits.Data());
    for (size_t i = 0; i < count; ++i) {
      CheckC(rl310_write_result(output_dir.c_str(), images[first + i], 0,
                                data.get() + i * classes, classes, err, sizeof(err)),
             err);
    }
  }

  const rl310_timing timing = rl310_summarize_timing(batch_ms.data(), batch_ms.size(),
                                                     images.size());
  CheckC(rl310_write_timing(timing_file.c_str(), &timing, err, sizeof(err)), err);
  std::printf("inferred %zu images in %zu batches of %d: %.3f ms per batch, %.2f images/s;\n"
              "results in %s, timing in %s\n",
              timing.images, timing.batches, batch_size, timing.mean_batch_ms,
              timing.images_per_second, output_dir.c_str(), timing_file.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const rl310::CliFlags flags(argc, argv,
                                {{"mindir_path", ""},
                                 {"dataset_path", ""},
                                 {"device_id", "0"},
                                 {"batch_size", "1"},
                                 {"output_dir", "result_Files"},
                                 {"timing_file", "time_Result/test_perform_static.txt"},
                                 {"resize_size", "0"},
                                 {"precision_mode", "default"}});
    if (flags.help()) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    return Run(flags);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "rl310_infer: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rl310_infer: %s\n", e.what());
    return 1;
  }
}
