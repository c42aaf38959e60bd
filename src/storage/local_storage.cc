#include "storage/local_storage.h"

#include <fstream>
#include <system_error>
#include <thread>

namespace imgproc::storage {

LocalStorage::LocalStorage(std::filesystem::path media_dir, std::string public_base_url)
    : media_dir_(std::move(media_dir)), public_base_url_(std::move(public_base_url)) {
  while (!public_base_url_.empty() && public_base_url_.back() == '/') public_base_url_.pop_back();
}

Result<std::string> LocalStorage::Put(const std::string& request_id, const std::string& name,
                                      const std::string& bytes) {
  const auto dir = media_dir_ / request_id;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Transient("cannot create " + dir.string() + ": " + ec.message());
  // The temporary name is unique per thread, so concurrent retries cannot interleave.
  const auto tmp = dir / ("." + name + ".tmp" +
                          std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())));
  // Whatever fails, the temporary file does not stay behind.
  const auto discard = [&tmp](Status failure) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    return failure;
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) return discard(Transient("cannot write " + tmp.string()));
  }
  std::filesystem::rename(tmp, dir / name, ec);
  if (ec) return discard(Transient("cannot store " + name + ": " + ec.message()));
  return public_base_url_ + "/media/" + request_id + "/" + name;
}

bool LocalStorage::Holds(const std::string& url) {
  const std::string prefix = public_base_url_ + "/media/";
  if (url.compare(0, prefix.size(), prefix) != 0) return false;
  return ResolveMediaPath(media_dir_, std::string_view(url).substr(prefix.size())).has_value();
}

std::optional<std::filesystem::path> ResolveMediaPath(const std::filesystem::path& media_dir,
                                                      std::string_view relative) {
  // Only "<segment>/<segment>" made of safe characters: no "..", no hidden files, no separators
  // beyond the one between request id and file name, no NUL or percent-decoding surprises.
  const size_t slash = relative.find('/');
  if (slash == std::string_view::npos || relative.find('/', slash + 1) != std::string_view::npos)
    return std::nullopt;
  for (std::string_view segment : {relative.substr(0, slash), relative.substr(slash + 1)}) {
    if (segment.empty() || segment.size() > 128 || segment.front() == '.') return std::nullopt;
    for (char c : segment) {
      const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
      if (!safe) return std::nullopt;
    }
  }
  std::error_code ec;
  std::error_code root_ec;
  // A symlink planted inside the folder must not lead out of it either.
  const auto real = std::filesystem::canonical(media_dir / std::filesystem::path(relative), ec);
  const auto root = std::filesystem::canonical(media_dir, root_ec);
  if (ec || root_ec) return std::nullopt;
  const auto rel = real.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  if (!std::filesystem::is_regular_file(real, ec)) return std::nullopt;
  return real;
}

}  // namespace imgproc::storage
