#include "util/output_guard.h"

#include <algorithm>
#include <filesystem>

#include "util/error.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void refuse(const std::string& output, const std::string& option, const std::string& input,
                         const std::string& how) {
  fail_input(output, option + " " + how + " " + input +
                         ", an input of this command; refusing to overwrite it (write "
                         "the output elsewhere)");
}

}  // namespace

void refuse_output_over_inputs(const std::string& output, const std::vector<std::string>& inputs,
                               const std::string& option) {
  std::error_code ec;
  if (!fs::exists(output, ec)) return;
  for (const std::string& input : inputs) {
    if (input.empty()) continue;
    std::error_code ignored;
    if (fs::equivalent(output, input, ignored)) refuse(output, option, input, "names the same file as");
  }
}

void refuse_folder_over_inputs(const std::string& dir, const std::vector<std::string>& inputs,
                               const std::string& option) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return refuse_output_over_inputs(dir, inputs, option);
  const fs::path folder = fs::canonical(dir, ec);
  if (ec) return;
  for (const std::string& input : inputs) {
    if (input.empty()) continue;
    std::error_code ignored;
    if (fs::equivalent(dir, input, ignored)) refuse(dir, option, input, "names the same folder as");
    const fs::path resolved = fs::weakly_canonical(input, ignored);
    if (ignored) continue;
    const auto mismatch = std::mismatch(folder.begin(), folder.end(), resolved.begin(), resolved.end());
    if (mismatch.first == folder.end()) refuse(dir, option, input, "holds");
  }
}

}  // namespace kvsim
