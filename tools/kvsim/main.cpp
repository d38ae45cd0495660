// kvsim: trace-driven simulator of LLM KV-cache memory behaviour. Dispatches to one subcommand.
#include <cstring>
#include <new>
#include <exception>
#include <iostream>
#include <string>

#include "tools/kvsim/commands.h"
#include "util/allocator.h"
#include "util/error.h"

namespace {

constexpr const char* kUsage = R"(kvsim: trace-driven simulator of LLM KV-cache memory behaviour

usage: kvsim <command> [options]        (kvsim <command> --help for each)

commands:
  run SCENARIO.ini --out DIR   replay a request under every policy of the scenario; print a table
                               and write DIR/summary.json, timeline.csv, requests.csv
  synth --model PRESET ...     write a synthetic attention trace (HDF5, format v1)
  inspect FILE.h5              print a trace file's model, requests and layers, and validate it
  policies                     list the registered KV policies with their parameters
  hw show PRESET [--attach X]  print a hardware preset's memory hierarchy (--dot for Graphviz)

example:
  kvsim run configs/scenarios/default.ini --out results/default
)";

// Errors may quote text from input files; control characters are escaped so that an error is
// always exactly one line (and a file cannot forge extra lines of output).
std::string one_line(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) out += '?';
    else out += c;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvsim::cli;
  kvsim::tune_allocator();
  if (argc < 2) {
    std::cerr << "kvsim: missing command (kvsim --help lists them: run, synth, inspect, policies, hw)\n";
    return 2;
  }
  if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::cout << kUsage;
    return 0;
  }
  const std::string command = argv[1];
  const Args args(argv + 2, argv + argc);
  try {
    if (command == "run") return cmd_run(args);
    if (command == "synth") return cmd_synth(args);
    if (command == "inspect") return cmd_inspect(args);
    if (command == "policies") return cmd_policies(args);
    if (command == "hw") return cmd_hw(args);
    std::cerr << "kvsim: unknown command '" << command << "' (commands: run, synth, inspect, policies, hw)\n";
    return 2;
  } catch (const kvsim::InputError& e) {
    std::cerr << "kvsim " << command << ": error: " << one_line(e.what()) << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "kvsim " << command << ": error: out of memory (reduce prompt_tokens, traced_layers or "
                 "fidelity_queries)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "kvsim " << command << ": internal error: " << one_line(e.what()) << "\n";
    return 3;
  }
}
