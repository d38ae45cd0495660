// kvsim hw: look at hardware presets and their memory hierarchy.
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "hw/cost_model.h"
#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "traces/model_presets.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/units.h"

namespace kvsim::cli {

namespace po = boost::program_options;

namespace {

void print_hardware(const Hierarchy& hierarchy) {
  const Hardware& hw = hierarchy.hardware();
  const Device& d = hw.device;
  std::cout << d.name << ": " << format_quantity(d.flops_per_s_bf16, UnitKind::kFlopsPerSecond) << " BF16";
  if (d.flops_per_s_fp8 > 0)
    std::cout << ", " << format_quantity(d.flops_per_s_fp8, UnitKind::kFlopsPerSecond) << " FP8";
  std::cout << " (dense); efficiency compute " << d.compute_efficiency << ", memory " << d.memory_efficiency;
  if (d.tp_bytes_per_s > 0)
    std::cout << "; TP link " << format_quantity(d.tp_bytes_per_s, UnitKind::kBytesPerSecond) << "/dir";
  std::cout << "; small kernels per layer per pass: max(" << format_quantity(d.layer_overhead_s, UnitKind::kSeconds);
  if (d.activation_efficiency > 0)
    std::cout << ", activation bytes at " << d.activation_efficiency << " of HBM bandwidth";
  std::cout << ")";
  for (const Device::AllReduce& a : d.allreduce) {
    std::cout << "; all-reduce TP" << a.workers << " " << format_quantity(a.latency_s, UnitKind::kSeconds)
              << " + bytes / " << format_quantity(a.bytes_per_s, UnitKind::kBytesPerSecond);
  }
  if (d.cpu_overhead_s > 0 || d.cpu_overhead_tp_s > 0 || d.cpu_overhead_per_request_s > 0) {
    std::cout << "; CPU per iteration " << format_quantity(d.cpu_overhead_s, UnitKind::kSeconds) << " (+"
              << format_quantity(d.cpu_overhead_tp_s, UnitKind::kSeconds) << " at TP > 1) + "
              << format_quantity(d.cpu_overhead_per_request_s, UnitKind::kSeconds) << " per request";
  }
  std::cout << "\n\ntiers:\n";
  char line[256];
  for (const Tier& t : hw.tiers) {
    if (t.kind == "switch") {
      std::snprintf(line, sizeof line, "  %-8s %-7s (switch)\n", t.name.c_str(), t.kind.c_str());
    } else {
      std::snprintf(line, sizeof line, "  %-8s %-7s %12s  read %12s  write %12s  latency %s%s\n", t.name.c_str(),
                    t.kind.c_str(), format_quantity(t.capacity_bytes, UnitKind::kBytes).c_str(),
                    format_quantity(t.read_bytes_per_s, UnitKind::kBytesPerSecond).c_str(),
                    format_quantity(t.write_bytes_per_s, UnitKind::kBytesPerSecond).c_str(),
                    format_quantity(t.latency_s, UnitKind::kSeconds).c_str(),
                    t.name == d.compute_tier ? "  [compute]" : "");
    }
    std::cout << line;
  }
  std::cout << "\nlinks (bandwidth per direction, x efficiency for bulk copies):\n";
  for (const Link& l : hw.links) {
    std::snprintf(line, sizeof line, "  %-8s %s <-> %s  %s x %g  latency %s\n", l.name.c_str(), l.from.c_str(),
                  l.to.c_str(), format_quantity(l.bytes_per_s, UnitKind::kBytesPerSecond).c_str(), l.efficiency,
                  format_quantity(l.latency_s, UnitKind::kSeconds).c_str());
    std::cout << line;
  }
  std::cout << "\npaths from " << d.compute_tier << ":\n";
  for (const Tier& t : hw.tiers) {
    if (t.name == d.compute_tier || t.kind == "switch") continue;
    std::string route = d.compute_tier;
    for (const auto& hop : hierarchy.path(d.compute_tier, t.name)) {
      const Link& l = hw.links[static_cast<std::size_t>(hop.link)];
      route += " -" + l.name + "-> " + (hop.forward ? l.to : l.from);
    }
    std::cout << "  " << route << "  (bottleneck "
              << format_quantity(hierarchy.bottleneck_bytes_per_s(d.compute_tier, t.name), UnitKind::kBytesPerSecond)
              << ")\n";
  }
}

}  // namespace

// kvsim hw cost: what one pass costs, for planning and for validating the cost model.
int hw_cost(const Hardware& hw, const po::variables_map& v) {
  if (!v.count("model")) fail_input("kvsim hw cost", "missing --model PRESET");
  const ModelShape model = load_model_preset(v["model"].as<std::string>());
  const int tp = v["tp"].as<int>();
  const auto tokens_list =
      v.count("tokens") ? v["tokens"].as<std::vector<std::int64_t>>() : std::vector<std::int64_t>{1, 128, 1024, 8192};
  const std::int64_t context = v["context"].as<std::int64_t>();
  const int batch = v["batch"].as<int>();
  if (batch < 1) fail_input("kvsim hw cost --batch", "must be >= 1");
  const std::string cpu = v["cpu-overhead"].as<std::string>();
  if (cpu != "on" && cpu != "off") fail_input("kvsim hw cost --cpu-overhead", "expected on or off");
  Hardware priced = hw;
  if (cpu == "off") {  // an engine without vLLM's per-iteration CPU work (e.g. a C++ runtime)
    priced.device.cpu_overhead_s = priced.device.cpu_overhead_tp_s = priced.device.cpu_overhead_per_request_s = 0;
  }
  const CostModel cost(priced, model, tp, "kvsim hw cost");
  const double heads = static_cast<double>(model.num_layers) * model.num_kv_heads;
  std::cout
      << "tokens,context,tp,pass_s,compute_s,memory_s,communication_s,bound,linear_layer_s,batch,overhead_s,cpu_s\n";
  for (std::int64_t tokens : tokens_list) {
    if (tokens < 1) fail_input("kvsim hw cost --tokens", "must be >= 1");
    // `batch` requests in one pass, each a chunk of `tokens` after `context` cached tokens, full attention.
    const double b = batch;
    PassWork w;
    w.tokens = b * static_cast<double>(tokens);
    w.logits_tokens = b;
    w.requests = b;
    w.kv_read_entries = b * static_cast<double>(context) * heads;
    w.kv_written_entries = w.tokens * heads;
    w.attention_entry_steps = b * heads * (static_cast<double>(context) * tokens + tokens * (tokens + 1.0) / 2);
    const PassCost c = cost.pass_cost(w);
    std::cout << tokens << "," << context << "," << tp << "," << c.time_s << "," << c.compute_s << "," << c.memory_s
              << "," << c.communication_s << "," << bound_name(c.bound) << ","
              << cost.linear_layer_time_s(static_cast<double>(tokens)) << "," << batch << "," << c.overhead_s << ","
              << c.cpu_s << "\n";
  }
  return 0;
}

int cmd_hw(const Args& args) {
  po::options_description options(
      "kvsim hw show PRESET [--attach NAME]... [--dot FILE] | kvsim hw list |\n"
      "kvsim hw cost PRESET --model M [--tokens N,...] [--context C] [--tp T] [--batch B] [--cpu-overhead on|off]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("action", po::value<std::string>(), "show | list")
      ("preset", po::value<std::string>(), "hardware preset (configs/hardware/) or an .ini path")
      ("attach,a", po::value<std::vector<std::string>>()->composing(),
       "attach a tier (configs/hardware/attach/: host-ddr5, cxl-gen5, cxl-gen4, nvme-gen5), repeatable")
      ("dot", po::value<std::string>(), "also write the hierarchy as Graphviz to FILE")
      ("model", po::value<std::string>(), "cost: model preset")
      ("tokens", po::value<std::vector<std::int64_t>>()->multitoken(), "cost: tokens in the pass (several allowed)")
      ("context", po::value<std::int64_t>()->default_value(0), "cost: tokens already cached")
      ("tp", po::value<int>()->default_value(1), "cost: tensor-parallel degree")
      ("batch", po::value<int>()->default_value(1), "cost: requests in the pass, each with --tokens after --context")
      ("cpu-overhead", po::value<std::string>()->default_value("on"),
       "cost: on (the preset's per-iteration CPU time) or off (an engine without it)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("action", 1).add("preset", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim hw");
  const std::string action = v.count("action") ? v["action"].as<std::string>() : "";
  if (action.empty() && !v.count("help")) {
    fail_input("kvsim hw", "missing action: show PRESET, list or cost PRESET (kvsim hw --help)");
  }
  if (v.count("help")) {
    std::cout << options
              << "\nExamples:\n  kvsim hw list\n  kvsim hw show h100-sxm --attach host-ddr5 --attach cxl-gen5\n"
                 "  kvsim hw show gh200 --dot gh200.dot && dot -Tpng gh200.dot -o gh200.png\n"
                 "  kvsim hw cost h100-sxm --model llama-3.1-8b --tokens 1 2048 --context 8192\n";
    return 0;
  }
  if (action == "list") {
    std::cout << "presets:";
    for (const auto& n : hardware_preset_names()) std::cout << " " << n;
    std::cout << "\nattachments:";
    for (const auto& n : hardware_attachment_names()) std::cout << " " << n;
    std::cout << "\n";
    return 0;
  }
  if (action != "show" && action != "cost")
    fail_input("kvsim hw", "unknown action '" + action + "' (expected show, list or cost)");
  if (!v.count("preset")) fail_input("kvsim hw show", "missing PRESET (kvsim hw list shows them)");
  const auto attach = v.count("attach") ? v["attach"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (action == "cost") return hw_cost(load_hardware(v["preset"].as<std::string>(), attach), v);
  const Hierarchy hierarchy(load_hardware(v["preset"].as<std::string>(), attach));
  print_hardware(hierarchy);
  if (v.count("dot")) {
    const std::string dot = hierarchy.to_dot();
    write_file_atomically(v["dot"].as<std::string>(), [&](std::ostream& out) { out << dot; });
  }
  return 0;
}

}  // namespace kvsim::cli
