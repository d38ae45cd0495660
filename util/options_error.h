#pragma once
// The message of a Boost.Program_options error, for any input.
//
// Boost 1.74's error_with_option_name::what() substitutes its %value%, %canonical_option%, ...
// placeholders until none is left, so a key or value that itself contains such a token (an INI line
// or a command-line argument with '%value%' in it) makes what() loop forever. Found by fuzzing the
// hardware and scenario readers; `kvsim run --threads %value%` hung the same way.
#include <boost/program_options/errors.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

// e.what(), or, when `input` (the text that was parsed) contains a '%', a message built from the
// option's name alone, which never calls what() on an error that substitutes placeholders.
std::string options_error_text(const boost::program_options::error& e, std::string_view input);

// The same for a command line: `args` are the words that were parsed.
std::string options_error_text(const boost::program_options::error& e, const std::vector<std::string>& args);

}  // namespace kvsim
