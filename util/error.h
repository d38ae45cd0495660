#pragma once
// Errors that reach the user. Anything wrong with an input file (config, trace, workload) is an
// InputError whose message is one line naming the file, the key or dataset, and the expected form;
// the command-line front end prints it and exits non-zero. Invariant violations inside kvsim are
// not InputErrors: they are bugs and use assert / std::logic_error.
#include <stdexcept>
#include <string>

namespace kvsim {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

// "where: what" -- where is a file, optionally with a key or dataset ("a.ini: [model] num_layers").
[[noreturn]] inline void fail_input(const std::string& where, const std::string& what) {
  throw InputError(where + ": " + what);
}

}  // namespace kvsim
