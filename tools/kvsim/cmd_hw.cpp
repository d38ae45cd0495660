// kvsim hw: look at hardware presets and their memory hierarchy.
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "tools/kvsim/commands.h"
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
  if (d.flops_per_s_fp8 > 0) std::cout << ", " << format_quantity(d.flops_per_s_fp8, UnitKind::kFlopsPerSecond) << " FP8";
  std::cout << " (dense); efficiency compute " << d.compute_efficiency << ", memory " << d.memory_efficiency;
  if (d.tp_bytes_per_s > 0) std::cout << "; TP link " << format_quantity(d.tp_bytes_per_s, UnitKind::kBytesPerSecond) << "/dir";
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
  std::cout << "\nlinks (bandwidth per direction):\n";
  for (const Link& l : hw.links) {
    std::snprintf(line, sizeof line, "  %-8s %s <-> %s  %s  latency %s\n", l.name.c_str(), l.from.c_str(), l.to.c_str(),
                  format_quantity(l.bytes_per_s, UnitKind::kBytesPerSecond).c_str(),
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

int cmd_hw(const Args& args) {
  po::options_description options("kvsim hw show PRESET [--attach NAME]... [--dot FILE] | kvsim hw list");
  options.add_options()
      ("help,h", "show this help")
      ("action", po::value<std::string>(), "show | list")
      ("preset", po::value<std::string>(), "hardware preset (configs/hardware/) or an .ini path")
      ("attach,a", po::value<std::vector<std::string>>()->composing(),
       "attach a tier (configs/hardware/attach/: host-ddr5, cxl-gen5, cxl-gen4), repeatable")
      ("dot", po::value<std::string>(), "also write the hierarchy as Graphviz to FILE");
  po::positional_options_description positional;
  positional.add("action", 1).add("preset", 1);
  po::variables_map v;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), v);
  } catch (const po::error& e) {
    fail_input("kvsim hw", std::string(e.what()) + " (see kvsim hw --help)");
  }
  const std::string action = v.count("action") ? v["action"].as<std::string>() : "";
  if (v.count("help") || action.empty()) {
    std::cout << options << "\nExamples:\n  kvsim hw list\n  kvsim hw show h100-sxm --attach host-ddr5 --attach cxl-gen5\n"
                 "  kvsim hw show gh200 --dot gh200.dot && dot -Tpng gh200.dot -o gh200.png\n";
    return action.empty() && !v.count("help") ? 2 : 0;
  }
  if (action == "list") {
    std::cout << "presets:";
    for (const auto& n : hardware_preset_names()) std::cout << " " << n;
    std::cout << "\nattachments:";
    for (const auto& n : hardware_attachment_names()) std::cout << " " << n;
    std::cout << "\n";
    return 0;
  }
  if (action != "show") fail_input("kvsim hw", "unknown action '" + action + "' (expected show or list)");
  if (!v.count("preset")) fail_input("kvsim hw show", "missing PRESET (kvsim hw list shows them)");
  const auto attach = v.count("attach") ? v["attach"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const Hierarchy hierarchy(load_hardware(v["preset"].as<std::string>(), attach));
  print_hardware(hierarchy);
  if (v.count("dot")) {
    const std::string dot = hierarchy.to_dot();
    write_file_atomically(v["dot"].as<std::string>(), [&](std::ostream& out) { out << dot; });
  }
  return 0;
}

}  // namespace kvsim::cli
