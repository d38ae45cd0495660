#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "hw/hardware.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/options_error.h"
#include "util/presets.h"
#include "util/units.h"

namespace kvsim {

namespace po = boost::program_options;
namespace fs = std::filesystem;

const Tier& Hardware::tier(const std::string& name) const {
  for (const auto& t : tiers) {
    if (t.name == name) return t;
  }
  throw std::logic_error("no tier " + name);
}

bool Hardware::has_tier(const std::string& name) const {
  return std::any_of(tiers.begin(), tiers.end(), [&](const Tier& t) { return t.name == name; });
}

namespace {

double parse_fraction(const std::string& text, const std::string& where) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) fail_input(where, "expected a plain number such as 0.7, got '" + text + "'");
  return value;
}

// `allreduce_tp<N> = <latency>, <bandwidth>`, e.g. allreduce_tp4 = 30.6 us, 253 GB/s.
Device::AllReduce parse_allreduce(const std::string& field, const std::string& value, const std::string& where) {
  Device::AllReduce a;
  const std::string digits = field.substr(std::string("allreduce_tp").size());
  if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(digits) < 2) {
    fail_input(where, "expected allreduce_tp<N> with a worker count N >= 2, e.g. allreduce_tp4");
  }
  a.workers = std::stoi(digits);
  const auto comma = value.find(',');
  if (comma == std::string::npos) fail_input(where, "expected '<latency>, <bandwidth>', e.g. 30 us, 250 GB/s");
  auto trim = [](std::string s) {
    s.erase(0, s.find_first_not_of(" \t"));
    s.erase(s.find_last_not_of(" \t") + 1);
    return s;
  };
  a.latency_s = parse_quantity(trim(value.substr(0, comma)), UnitKind::kSeconds, where);
  a.bytes_per_s = parse_quantity(trim(value.substr(comma + 1)), UnitKind::kBytesPerSecond, where);
  if (a.latency_s < 0) fail_input(where, "latency must be >= 0");
  if (!(a.bytes_per_s > 0)) fail_input(where, "bandwidth must be > 0");
  return a;
}

// Reads every `section.key = value` of an INI file (sections may be dotted: [tier.hbm]).
std::vector<std::pair<std::string, std::string>> read_pairs(const fs::path& path) {
  const std::string text = read_ini_text(path.string());  // checked, and without a UTF-8 byte-order mark
  std::istringstream in(text);
  po::options_description none;
  try {
    const po::parsed_options parsed = po::parse_config_file(in, none, /*allow_unregistered=*/true);
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& option : parsed.options) {
      pairs.emplace_back(option.string_key, option.value.empty() ? "" : option.value.front());
    }
    return pairs;
  } catch (const po::error& e) {
    fail_input(path.string(), options_error_text(e, text));
  }
}

void merge_file(const fs::path& path, Hardware& hw, bool device_allowed) {
  const std::string file = path.string();
  std::map<std::string, Tier> tiers;
  std::map<std::string, Link> links;
  std::set<std::string> seen;
  for (const auto& [key, value] : read_pairs(path)) {
    const std::string where = file + ": " + key;
    if (!seen.insert(key).second) fail_input(where, "given twice");
    const auto dot = key.rfind('.');
    const std::string section = key.substr(0, dot);
    const std::string field = key.substr(dot + 1);
    if (section == "device") {
      if (!device_allowed) fail_input(where, "an attachment may only add [tier.*] and [link.*] sections");
      Device& d = hw.device;
      if (field == "name") d.name = value;
      else if (field == "flops_bf16") d.flops_per_s_bf16 = parse_quantity(value, UnitKind::kFlopsPerSecond, where);
      else if (field == "flops_fp8") d.flops_per_s_fp8 = parse_quantity(value, UnitKind::kFlopsPerSecond, where);
      else if (field == "compute_efficiency") d.compute_efficiency = parse_fraction(value, where);
      else if (field == "memory_efficiency") d.memory_efficiency = parse_fraction(value, where);
      else if (field == "compute_tier") d.compute_tier = value;
      else if (field == "tp_bandwidth") d.tp_bytes_per_s = parse_quantity(value, UnitKind::kBytesPerSecond, where);
      else if (field == "layer_overhead") d.layer_overhead_s = parse_quantity(value, UnitKind::kSeconds, where);
      else if (field == "activation_efficiency") d.activation_efficiency = parse_fraction(value, where);
      else if (field.rfind("allreduce_tp", 0) == 0) d.allreduce.push_back(parse_allreduce(field, value, where));
      else if (field == "cpu_overhead") d.cpu_overhead_s = parse_quantity(value, UnitKind::kSeconds, where);
      else if (field == "cpu_overhead_tp") d.cpu_overhead_tp_s = parse_quantity(value, UnitKind::kSeconds, where);
      else if (field == "cpu_overhead_per_request")
        d.cpu_overhead_per_request_s = parse_quantity(value, UnitKind::kSeconds, where);
      else
        fail_input(where,
                   "unknown key (device keys: name, flops_bf16, flops_fp8, compute_efficiency, memory_efficiency, "
                   "tp_bandwidth, layer_overhead, activation_efficiency, allreduce_tp<N>, cpu_overhead, "
                   "cpu_overhead_tp, cpu_overhead_per_request, compute_tier)");
    } else if (section == "cost") {
      if (!device_allowed) fail_input(where, "an attachment may only add [tier.*] and [link.*] sections");
      if (field == "usd_per_gpu_hour") {
        hw.usd_per_gpu_hour = parse_fraction(value, where);
        if (!(std::isfinite(hw.usd_per_gpu_hour) && hw.usd_per_gpu_hour > 0))
          fail_input(where, "must be a finite number > 0 (US dollars per GPU per hour, e.g. 2.5)");
      } else if (field == "source") {
        hw.cost_source = value;
      } else {
        fail_input(where, "unknown key (cost keys: usd_per_gpu_hour, source)");
      }
    } else if (section.rfind("tier.", 0) == 0) {
      Tier& t = tiers[section.substr(5)];
      t.name = section.substr(5);
      if (field == "kind") t.kind = value;
      else if (field == "capacity") t.capacity_bytes = parse_quantity(value, UnitKind::kBytes, where);
      else if (field == "read_bandwidth") t.read_bytes_per_s = parse_quantity(value, UnitKind::kBytesPerSecond, where);
      else if (field == "write_bandwidth")
        t.write_bytes_per_s = parse_quantity(value, UnitKind::kBytesPerSecond, where);
      else if (field == "latency") t.latency_s = parse_quantity(value, UnitKind::kSeconds, where);
      else if (field == "source") t.source = value;
      else
        fail_input(where, "unknown key (tier keys: kind, capacity, read_bandwidth, write_bandwidth, latency, source)");
    } else if (section.rfind("link.", 0) == 0) {
      Link& l = links[section.substr(5)];
      l.name = section.substr(5);
      if (field == "from") l.from = value;
      else if (field == "to") l.to = value;
      else if (field == "bandwidth") l.bytes_per_s = parse_quantity(value, UnitKind::kBytesPerSecond, where);
      else if (field == "latency") l.latency_s = parse_quantity(value, UnitKind::kSeconds, where);
      else if (field == "efficiency") l.efficiency = parse_fraction(value, where);
      else fail_input(where, "unknown key (link keys: from, to, bandwidth, latency, efficiency)");
    } else {
      fail_input(file + ": [" + section + "]",
                 "unknown section (expected [device], [cost], [tier.NAME] or [link.NAME])");
    }
  }
  for (auto& [name, t] : tiers) {
    const std::string where = file + ": [tier." + name + "]";
    static const std::set<std::string> kKinds{"hbm", "dram", "cxl", "lpddr", "nvme", "switch"};
    if (!kKinds.count(t.kind)) fail_input(where + " kind", "expected one of hbm, dram, cxl, lpddr, nvme, switch");
    if (t.kind != "switch") {
      if (!(t.capacity_bytes > 0)) fail_input(where + " capacity", "must be > 0 (e.g. 80 GB)");
      if (!(t.read_bytes_per_s > 0)) fail_input(where + " read_bandwidth", "must be > 0 (e.g. 3.35 TB/s)");
      if (!(t.write_bytes_per_s > 0)) fail_input(where + " write_bandwidth", "must be > 0 (e.g. 3.35 TB/s)");
    }
    if (t.latency_s < 0) fail_input(where + " latency", "must be >= 0");
    if (hw.has_tier(name))
      fail_input(where, "tier '" + name + "' is already defined by the preset or another attachment");
    hw.tiers.push_back(t);
  }
  for (auto& [name, l] : links) hw.links.push_back(l);
}

void validate(const Hardware& hw, const std::string& where) {
  const Device& d = hw.device;
  if (d.name.empty()) fail_input(where + ": [device] name", "missing");
  if (!(d.flops_per_s_bf16 > 0)) fail_input(where + ": [device] flops_bf16", "must be > 0 (e.g. 989 TFLOPS)");
  if (!(d.compute_efficiency > 0 && d.compute_efficiency <= 1))
    fail_input(where + ": [device] compute_efficiency", "must be in (0, 1]");
  if (!(d.memory_efficiency > 0 && d.memory_efficiency <= 1))
    fail_input(where + ": [device] memory_efficiency", "must be in (0, 1]");
  if (!(d.layer_overhead_s >= 0)) fail_input(where + ": [device] layer_overhead", "must be >= 0 (e.g. 30 us)");
  if (!(d.activation_efficiency >= 0 && d.activation_efficiency <= 1)) {
    fail_input(where + ": [device] activation_efficiency", "must be in [0, 1] (0: no activation-traffic term)");
  }
  for (const char* key : {"cpu_overhead", "cpu_overhead_tp", "cpu_overhead_per_request"}) {
    const double v = std::string(key) == "cpu_overhead"      ? d.cpu_overhead_s
                     : std::string(key) == "cpu_overhead_tp" ? d.cpu_overhead_tp_s
                                                             : d.cpu_overhead_per_request_s;
    if (!(v >= 0)) fail_input(where + ": [device] " + key, "must be >= 0");
  }
  if (!hw.cost_source.empty() && hw.usd_per_gpu_hour <= 0)
    fail_input(where + ": [cost] source", "names the source of a price, but [cost] usd_per_gpu_hour is missing");
  if (!hw.has_tier(d.compute_tier))
    fail_input(where + ": [device] compute_tier", "no tier named '" + d.compute_tier + "'");
  for (const Link& l : hw.links) {
    const std::string at = where + ": [link." + l.name + "]";
    if (!hw.has_tier(l.from)) fail_input(at + " from", "unknown tier '" + l.from + "'");
    if (!hw.has_tier(l.to)) fail_input(at + " to", "unknown tier '" + l.to + "'");
    if (l.from == l.to) fail_input(at, "a link must join two different tiers");
    if (!(l.bytes_per_s > 0)) fail_input(at + " bandwidth", "must be > 0 (e.g. 64 GB/s per direction)");
    if (l.latency_s < 0) fail_input(at + " latency", "must be >= 0");
    if (!(l.efficiency > 0 && l.efficiency <= 1)) fail_input(at + " efficiency", "must be in (0, 1] (e.g. 0.78)");
  }
  // Every tier must be reachable from the compute tier (links carry both ways): an island would
  // only fail when a transfer first needs it, deep in a simulation, or never.
  std::set<std::string> reached{d.compute_tier};
  for (bool grew = true; grew;) {
    grew = false;
    for (const Link& l : hw.links) {
      if (reached.count(l.from) != reached.count(l.to)) {
        reached.insert(reached.count(l.from) ? l.to : l.from);
        grew = true;
      }
    }
  }
  for (const Tier& t : hw.tiers) {
    if (!reached.count(t.name)) {
      fail_input(where + ": [tier." + t.name + "]", "no path of links joins it to the compute tier '" + d.compute_tier +
                                                        "' (add a [link.NAME] with from/to)");
    }
  }
}

}  // namespace

std::vector<std::string> hardware_preset_names() { return preset_names(fs::path(config_dir()) / "hardware"); }
std::vector<std::string> hardware_attachment_names() {
  return preset_names(fs::path(config_dir()) / "hardware" / "attach");
}

Hardware load_hardware(const std::string& preset, const std::vector<std::string>& attachments) {
  const fs::path dir = fs::path(config_dir()) / "hardware";
  const fs::path path = resolve_preset(preset, dir, "hardware preset", "an .ini");
  Hardware hw;
  merge_file(path, hw, true);
  std::string where = path.string();
  for (const auto& name : attachments) {
    const fs::path attach = resolve_preset(name, dir / "attach", "hardware attachment", "an .ini");
    merge_file(attach, hw, false);
    where += " + " + attach.filename().string();
  }
  validate(hw, where);
  hw.source = where;
  return hw;
}

}  // namespace kvsim
