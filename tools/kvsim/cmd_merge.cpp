// kvsim merge: the shard folders of one sweep -> one folder with results.csv and results.h5.
#include <boost/program_options.hpp>
#include <iostream>

#include "sim/sweep/merge.h"
#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "util/error.h"

namespace kvsim::cli {

namespace po = boost::program_options;

int cmd_merge(const Args& args) {
  po::options_description options("kvsim merge DIR1 DIR2 ... --out DIR");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("inputs", po::value<std::vector<std::string>>(), "sweep folders written by kvsim sweep --shard i/N")
      ("out,o", po::value<std::string>(), "output folder (created; may be one of the inputs)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("inputs", -1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim merge");
  if (v.count("help")) {
    std::cout << options << "\n"
              << "Checks that the folders hold the same sweep (the hash in each sweep.id) and, together, every\n"
                 "scenario of it: a missing scenario is an error naming its index and key values. A scenario\n"
                 "found in several folders must have identical results there (a shard run twice is harmless);\n"
                 "different results are an error naming both folders. Then copies the scenario folders into\n"
                 "--out and writes --out/results.csv and results.h5, byte-identical to an unsharded run.\n\n"
                 "Example:\n"
                 "  for i in 1 2 3; do kvsim sweep S.ini --shard $i/3 --out shards/$i; done\n"
                 "  kvsim merge shards/1 shards/2 shards/3 --out results/S\n";
    return 0;
  }
  if (!v.count("inputs")) fail_input("kvsim merge", "missing the shard folders DIR1 DIR2 ... (see kvsim merge --help)");
  if (!v.count("out")) fail_input("kvsim merge", "missing --out DIR (see kvsim merge --help)");
  const std::string out = v["out"].as<std::string>();
  const MergeSummary summary = merge_sweep_dirs(v["inputs"].as<std::vector<std::string>>(), out);
  std::cout << out << "/results.csv, results.h5: " << summary.scenarios << " scenarios, " << summary.rows << " rows";
  if (summary.duplicates > 0)
    std::cout << " (" << summary.duplicates << " scenarios found in more than one folder, identical)";
  std::cout << "\n";
  return 0;
}

}  // namespace kvsim::cli
