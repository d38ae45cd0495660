#include "util/ini.h"

#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace kvsim {

namespace po = boost::program_options;

void parse_ini_file(const std::string& path, const po::options_description& options, po::variables_map& values) {
  if (std::filesystem::is_directory(path)) fail_input(path, "is a folder; expected an INI file");
  std::ifstream in(path);
  if (!in) fail_input(path, "cannot open file");
  try {
    po::store(po::parse_config_file(in, options, /*allow_unregistered=*/false), values);
    po::notify(values);
  } catch (const po::unknown_option& e) {
    fail_input(path, "unknown key '" + e.get_option_name() + "' (see --help for the keys of each section)");
  } catch (const po::invalid_option_value& e) {
    fail_input(path, e.what());
  } catch (const po::error& e) {
    fail_input(path, e.what());
  }
}

}  // namespace kvsim
