#include "rl310/infer_support.h"

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "rl310/eval_transform.h"
#include "rl310/image_files.h"

struct rl310_image_list {
  std::vector<std::string> paths;
};

namespace {

void SetError(char* err, size_t err_len, const char* message) {
  if (err != nullptr && err_len > 0) {
    std::snprintf(err, err_len, "%s", message);
  }
}

// Runs body, turning any exception into return code 1 and a message: exceptions must not
// cross into the code on the other ABI.
template <typename Body>
int Guarded(char* err, size_t err_len, Body body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
  } catch (...) {
    SetError(err, err_len, "unknown error");
  }
  return 1;
}

}  // namespace

extern "C" {

rl310_image_list* rl310_list_images(const char* dir, char* err, size_t err_len) {
  auto* list = new rl310_image_list;
  if (Guarded(err, err_len, [&] { list->paths = rl310::ListImages(dir); }) != 0) {
    delete list;
    return nullptr;
  }
  return list;
}

size_t rl310_image_count(const rl310_image_list* list) {
  return list == nullptr ? 0 : list->paths.size();
}

const char* rl310_image_path(const rl310_image_list* list, size_t index) {
  if (list == nullptr || index >= list->paths.size()) {
    return nullptr;
  }
  return list->paths[index].c_str();
}

void rl310_free_image_list(rl310_image_list* list) { delete list; }

int rl310_preprocess_file(const char* path, int crop_size, int resize_short, float* out,
                          char* err, size_t err_len) {
  return Guarded(err, err_len, [&] {
    const rl310::EvalTransform transform = rl310::MakeEvalTransform(crop_size, resize_short);
    rl310::PreprocessFile(path, transform, out);
  });
}

int rl310_write_result(const char* output_dir, const char* image_path, int output_index,
                       const float* data, size_t count, char* err, size_t err_len) {
  return Guarded(err, err_len, [&] {
    rl310::WriteFloats(rl310::ResultPath(output_dir, image_path, output_index), data, count);
  });
}

int rl310_make_dirs(const char* dir, char* err, size_t err_len) {
  return Guarded(err, err_len, [&] { rl310::MakeDirs(dir); });
}

rl310_timing rl310_summarize_timing(const double* batch_ms, size_t batches, size_t images) {
  rl310_timing timing{batches, images, 0.0, 0.0, 0.0};
  double total_ms = 0.0;
  for (size_t i = 0; i < batches; ++i) {
    total_ms += batch_ms[i];
  }
  if (batches > 0) {
    timing.mean_batch_ms = total_ms / static_cast<double>(batches);
  }
  if (images > 0) {
    timing.mean_image_ms = total_ms / static_cast<double>(images);
  }
  if (total_ms > 0.0) {
    timing.images_per_second = static_cast<double>(images) * 1000.0 / total_ms;
  }
  return timing;
}

int rl310_write_timing(const char* path, const rl310_timing* timing, char* err, size_t err_len) {
  std::FILE* file = std::fopen(path, "w");
  if (file == nullptr) {
    SetError(err, err_len, (std::string("cannot write ") + path).c_str());
    return 1;
  }
  std::fprintf(file, "NN inference cost average time: %.3f ms of infer_count %zu\n",
               timing->mean_batch_ms, timing->batches);
  std::fprintf(file, "images: %zu, mean latency per image: %.3f ms, throughput: %.2f images/s\n",
               timing->images, timing->mean_image_ms, timing->images_per_second);
  const bool failed = std::fclose(file) != 0;
  if (failed) {
    SetError(err, err_len, (std::string("cannot write ") + path).c_str());
  }
  return failed ? 1 : 0;
}

}  // extern "C"
