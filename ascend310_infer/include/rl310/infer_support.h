// The narrow C interface the MindSpore executable (main.cc) uses to reach the preprocessing
// and file code.
//
// Why C: MindSpore's C++ inference packages are built with the old libstdc++ string ABI
// (_GLIBCXX_USE_CXX11_ABI=0) while Debian's OpenCV uses the new one, so no std::string may
// cross between the two halves of the program. Everything here takes char pointers and
// plain buffers; errors come back as a non-zero return and a message in err.
#ifndef RL310_INFER_SUPPORT_H_
#define RL310_INFER_SUPPORT_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl310_image_list rl310_image_list;

// The sorted image files under dir (see rl310::ListImages); NULL on error.
rl310_image_list* rl310_list_images(const char* dir, char* err, size_t err_len);
size_t rl310_image_count(const rl310_image_list* list);
const char* rl310_image_path(const rl310_image_list* list, size_t index);
void rl310_free_image_list(rl310_image_list* list);

// Decodes path and applies the evaluation transform into out (3 * crop_size * crop_size
// floats, CHW). resize_short <= 0 means round(crop_size / 0.875). Returns 0 on success.
int rl310_preprocess_file(const char* path, int crop_size, int resize_short, float* out,
                          char* err, size_t err_len);

// Writes count floats to <output_dir>/<image stem>_<output_index>.bin. Returns 0 on success.
int rl310_write_result(const char* output_dir, const char* image_path, int output_index,
                       const float* data, size_t count, char* err, size_t err_len);

int rl310_make_dirs(const char* dir, char* err, size_t err_len);

// Latency statistics over per-batch model times (milliseconds).
typedef struct {
  size_t batches;
  size_t images;
  double mean_batch_ms;
  double mean_image_ms;
  double images_per_second;
} rl310_timing;

rl310_timing rl310_summarize_timing(const double* batch_ms, size_t batches, size_t images);

// Writes the summary as text (the seed's time_Result/test_perform_static.txt line plus
// images/s). Returns 0 on success.
int rl310_write_timing(const char* path, const rl310_timing* timing, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif  // RL310_INFER_SUPPORT_H_
