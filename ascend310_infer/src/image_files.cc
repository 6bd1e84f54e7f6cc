#include "rl310/image_files.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace fs = std::filesystem;

namespace rl310 {
namespace {

bool IsImageFile(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext == ".jpeg" || ext == ".jpg" || ext == ".png" || ext == ".bmp";
}

}  // namespace

std::vector<std::string> ListImages(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error("not a directory: " + dir);
  }
  std::vector<std::string> images;
  // Follow symlinked folders: data sets are often assembled from links to class folders.
  const auto options = fs::directory_options::follow_directory_symlink;
  for (fs::recursive_directory_iterator it(dir, options, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec) && IsImageFile(it->path())) {
      images.push_back(it->path().string());
    }
  }
  if (ec) {
    throw std::runtime_error("cannot list " + dir + ": " + ec.message());
  }
  std::sort(images.begin(), images.end());
  // Results are named after the file stem, so two images with one stem would overwrite each
  // other's result and get the same label: refuse rather than report a wrong accuracy.
  std::vector<std::pair<std::string, std::string>> stems;
  stems.reserve(images.size());
  for (const auto& image : images) {
    stems.emplace_back(fs::path(image).stem().string(), image);
  }
  std::sort(stems.begin(), stems.end());
  for (std::size_t i = 1; i < stems.size(); ++i) {
    if (stems[i].first == stems[i - 1].first) {
      throw std::runtime_error("two images share the name " + stems[i].first + ": " +
                               stems[i - 1].second + " and " + stems[i].second);
    }
  }
  return images;
}

std::string StemPath(const std::string& output_dir, const std::string& image_path,
                     const std::string& suffix) {
  return (fs::path(output_dir) / (fs::path(image_path).stem().string() + suffix)).string();
}

std::string ResultPath(const std::string& output_dir, const std::string& image_path,
                       int output_index) {
  return StemPath(output_dir, image_path, "_" + std::to_string(output_index) + ".bin");
}

void WriteFloats(const std::string& path, const float* data, std::size_t count) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data),
            static_cast<std::streamsize>(count * sizeof(float)));
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

void MakeDirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
  }
}

}  // namespace rl310
