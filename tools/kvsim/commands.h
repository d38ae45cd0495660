#pragma once
// One function per `kvsim` subcommand. Each gets the arguments after the subcommand name, prints
// its own --help, and returns the process exit code. They may throw kvsim::InputError; main()
// prints it as one line and exits with status 2.
#include <string>
#include <vector>

namespace kvsim::cli {

using Args = std::vector<std::string>;

int cmd_run(const Args& args);
int cmd_sweep(const Args& args);
int cmd_merge(const Args& args);
int cmd_synth(const Args& args);
int cmd_inspect(const Args& args);
int cmd_policies(const Args& args);
int cmd_hw(const Args& args);
int cmd_plan(const Args& args);
int cmd_workload(const Args& args);

}  // namespace kvsim::cli
