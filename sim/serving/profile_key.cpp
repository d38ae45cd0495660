#include "sim/serving/profile_key.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "sim/scenario.h"
#include "util/hash.h"

namespace kvsim {

namespace fs = std::filesystem;

const std::optional<std::string>& build_identity() {
  static const std::optional<std::string> identity = []() -> std::optional<std::string> {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return std::nullopt;
    const auto bytes = fs::file_size(exe, ec);
    if (ec) return std::nullopt;
    const auto mtime = fs::last_write_time(exe, ec);
    if (ec) return std::nullopt;
    return std::to_string(bytes) + ":" + std::to_string(mtime.time_since_epoch().count());
  }();
  return identity;
}

std::optional<std::string> retention_profile_key(const SynthParams& params, const PassPlan& plan, const Policy& policy,
                                                 std::string_view measurement) {
  if (!build_identity()) return std::nullopt;
  const std::string spec = policy.spec();
  std::string files;
  for (const std::string& file : policy_spec_files(spec)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::nullopt;
    const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return std::nullopt;
    files += (files.empty() ? "" : ",") + hex64(text_hash(content));
  }
  std::string key = "v" + std::to_string(kRetentionProfileVersion) + " build=" + *build_identity() +
                    " policy=" + std::to_string(spec.size()) + ":" + spec + " files=[" + files + "]" + " synth={" +
                    synth_params_key(params) + "} chunk=" + std::to_string(plan.chunk_tokens) +
                    " passes=" + std::to_string(plan.passes.size()) + " " + std::string(measurement);
  if (key.find('\n') != std::string::npos) return std::nullopt;  // the file stores the key as one line
  return key;
}

}  // namespace kvsim
