// Files around the model: which images to read, where each result goes.
#ifndef RL310_IMAGE_FILES_H_
#define RL310_IMAGE_FILES_H_

#include <cstddef>
#include <string>
#include <vector>

namespace rl310 {

// Image files (.jpeg/.jpg/.png/.bmp, any case) directly in dir or in its sub-directories
// (an ImageNet val/<class>/ tree works as well as a flat folder), sorted by path so runs
// are reproducible. Throws std::runtime_error when dir is not a readable directory or when
// two images share a file stem (their results would collide).
std::vector<std::string> ListImages(const std::string& dir);

// "<output_dir>/<file name without extension><suffix>".
std::string StemPath(const std::string& output_dir, const std::string& image_path,
                     const std::string& suffix);

// "<output_dir>/<file name without extension>_<output_index>.bin": the seed's layout, which
// resnest.postprocess reads.
std::string ResultPath(const std::string& output_dir, const std::string& image_path,
                       int output_index);

// Writes count raw float32 values (native byte order, as numpy.fromfile reads them).
void WriteFloats(const std::string& path, const float* data, std::size_t count);

// mkdir -p.
void MakeDirs(const std::string& dir);

}  // namespace rl310

#endif  // RL310_IMAGE_FILES_H_
