#include "util/options_error.h"

namespace kvsim {

namespace po = boost::program_options;

std::string options_error_text(const po::error& e, std::string_view input) {
  const auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
  if (named == nullptr || input.find('%') == std::string_view::npos) return e.what();
  const std::string name = named->get_option_name();
  return name.find('%') == std::string::npos && !name.empty()
             ? "'" + name + "': invalid value or syntax"
             : "invalid value or syntax (a key or value with '%' in it)";
}

std::string options_error_text(const po::error& e, const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg.find('%') != std::string::npos) return options_error_text(e, std::string_view("%"));
  }
  return e.what();
}

}  // namespace kvsim
