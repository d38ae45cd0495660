#pragma once
// Strict INI reading on top of Boost.Program_options: every key must be declared, a value that does
// not parse names the file, section and key, and an unknown section or key is an error.
#include <boost/program_options.hpp>
#include <string>

namespace kvsim {

// Parses `path` against `options` (keys written "section.key") into `values`.
// Throws InputError("<path>: ...") for a missing file, syntax error, unknown key or bad value.
void parse_ini_file(const std::string& path, const boost::program_options::options_description& options,
                    boost::program_options::variables_map& values);

// The same for INI text already in memory, as if it were the file `path` (errors name `path`).
void parse_ini_text(const std::string& text, const std::string& path,
                    const boost::program_options::options_description& options,
                    boost::program_options::variables_map& values);

// The whole text of an INI file. Throws InputError("<path>: ...") for a folder or an unreadable file.
std::string read_ini_text(const std::string& path);

}  // namespace kvsim
