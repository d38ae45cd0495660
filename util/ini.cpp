#include "util/ini.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "util/error.h"
#include "util/options_error.h"

namespace kvsim {

namespace po = boost::program_options;

namespace {

// Editors on Windows start UTF-8 files with a byte-order mark; Boost would read it as part of the
// first section or key name and report an unknown key. CSV and JSONL inputs skip it the same way.
std::string_view without_bom(std::string_view text) {
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  return text.substr(0, kBom.size()) == kBom ? text.substr(kBom.size()) : text;
}

}  // namespace

std::string read_ini_text(const std::string& path) {
  std::error_code ec;  // a name too long for the file system is an error code, not an exception
  if (std::filesystem::is_directory(path, ec)) fail_input(path, "is a folder; expected an INI file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path, "cannot open file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail_input(path, "cannot read file");
  return std::string(without_bom(text.str()));
}

void parse_ini_file(const std::string& path, const po::options_description& options, po::variables_map& values) {
  parse_ini_text(read_ini_text(path), path, options, values);
}

void parse_ini_text(const std::string& text, const std::string& path, const po::options_description& options,
                    po::variables_map& values) {
  std::istringstream in{std::string(without_bom(text))};
  try {
    po::store(po::parse_config_file(in, options, /*allow_unregistered=*/false), values);
    po::notify(values);
  } catch (const po::unknown_option& e) {
    fail_input(path, "unknown key '" + e.get_option_name() + "' (see --help for the keys of each section)");
  } catch (const po::error& e) {
    fail_input(path, options_error_text(e, text));
  }
}

}  // namespace kvsim
