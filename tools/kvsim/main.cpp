// kvsim: trace-driven simulator of LLM KV-cache memory behaviour. Dispatches to one subcommand.
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "tools/kvsim/commands.h"
#include "util/allocator.h"
#include "util/error.h"
#include "util/memory.h"
#include "util/units.h"

namespace {

constexpr const char* kUsage = R"(kvsim: trace-driven simulator of LLM KV-cache memory behaviour

usage: kvsim <command> [options]        (kvsim <command> --help for each)

commands:
  run SCENARIO.ini --out DIR   replay a request under every policy of the scenario, or serve a
                               workload of many requests ([workload] arrivals); print a table and
                               write DIR/summary.json, timeline.csv, requests.csv
  sweep SWEEP.ini --out DIR     run every scenario of a sweep file (lists, ranges) in parallel,
                               resumably, optionally one shard (--shard i/N); DIR/results.csv, .h5
  merge DIR1 DIR2 ... --out DIR  combine the shard folders of one sweep (checks none is missing)
  synth --model PRESET ...     write a synthetic attention trace (HDF5, format v1)
  inspect FILE.h5              print a trace file's model, requests and layers, and validate it
  policies                     list the registered KV policies with their parameters
  hw show PRESET [--attach X]  print a hardware preset's memory hierarchy (--dot for Graphviz)
  plan SCENARIO.ini --slo ...  highest arrival rate (or concurrency) each policy and hardware serves
                               within a p99 TTFT/TPOT SLO (serving scenarios: [workload] arrivals)
  workload FILE_OR_SPEC        summarise a serving workload (Azure .csv, Mooncake .jsonl, poisson(...))

global option:
  --max-memory SIZE            cap kvsim's own memory (e.g. 4GiB): work that needs more is refused
                               with one error line instead of an out-of-memory kill

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
    std::cerr << "kvsim: missing command (kvsim --help lists them: run, plan, sweep, merge, synth, inspect, workload, "
                 "policies, hw)\n";
    return 2;
  }
  if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::cout << kUsage;
    return 0;
  }
  // --max-memory SIZE (anywhere on the line, any command) caps kvsim's own memory.
  std::vector<std::string> words(argv + 1, argv + argc);
  double max_memory_bytes = 0;
  bool max_memory_seen = false;
  for (std::size_t i = 0; i < words.size();) {
    std::string value;
    if (words[i] == "--max-memory" && i + 1 == words.size()) {
      std::cerr << "kvsim: error: --max-memory: missing its SIZE (e.g. --max-memory 4GiB)\n";
      return 2;
    }
    if (words[i] == "--max-memory") {
      value = words[i + 1];
      words.erase(words.begin() + static_cast<std::ptrdiff_t>(i), words.begin() + static_cast<std::ptrdiff_t>(i) + 2);
    } else if (words[i].rfind("--max-memory=", 0) == 0) {
      value = words[i].substr(13);
      words.erase(words.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
      continue;
    }
    try {
      // Two caps would leave the reader guessing which one holds (and the second used to reach the
      // command as an unknown option).
      if (max_memory_seen) kvsim::fail_input("--max-memory", "given twice; give it once");
      max_memory_seen = true;
      max_memory_bytes = kvsim::parse_quantity(value, kvsim::UnitKind::kBytes, "--max-memory");
      if (!(max_memory_bytes >= (1 << 26))) kvsim::fail_input("--max-memory", "must be at least 64 MiB");
    } catch (const kvsim::InputError& e) {
      std::cerr << "kvsim: error: " << one_line(e.what()) << "\n";
      return 2;
    }
  }
  if (max_memory_seen) kvsim::set_memory_limit_bytes(max_memory_bytes);
  if (words.empty()) {
    std::cerr << "kvsim: missing command (kvsim --help lists them)\n";
    return 2;
  }
  const std::string command = words[0];
  const Args args(words.begin() + 1, words.end());
  try {
    if (command == "run") return cmd_run(args);
    if (command == "sweep") return cmd_sweep(args);
    if (command == "merge") return cmd_merge(args);
    if (command == "synth") return cmd_synth(args);
    if (command == "inspect") return cmd_inspect(args);
    if (command == "policies") return cmd_policies(args);
    if (command == "hw") return cmd_hw(args);
    if (command == "plan") return cmd_plan(args);
    if (command == "workload") return cmd_workload(args);
    std::cerr << "kvsim: unknown command '" << command
              << "' (commands: run, plan, sweep, merge, synth, inspect, workload, policies, hw)\n";
    return 2;
  } catch (const kvsim::InputError& e) {
    std::cerr << "kvsim " << command << ": error: " << one_line(e.what()) << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    // The one line names the input that asked for the memory (the command's first file argument)
    // and the cap, as every other input error does.
    std::string input;
    for (const std::string& word : args) {
      if (!word.empty() && word[0] != '-' && std::filesystem::is_regular_file(word)) {
        input = word + ": ";
        break;
      }
    }
    std::cerr << "kvsim " << command << ": error: " << input << "out of memory"
              << (max_memory_bytes > 0
                      ? " under --max-memory " + std::to_string(std::llround(max_memory_bytes / (1 << 20))) + " MiB"
                      : std::string())
              << " (reduce [workload] prompt_tokens or traced_layers, or [sim] fidelity_queries)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "kvsim " << command << ": internal error: " << one_line(e.what()) << "\n";
    return 3;
  }
}
