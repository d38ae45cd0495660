#include "sim/sweep/expand.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "sim/sweep/values.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/ini.h"
#include "util/rng.h"
#include "util/strings.h"

namespace kvsim {

namespace {

// A sweep of a million scenarios is a typo, not a study.
constexpr std::size_t kMaxScenarios = 1000000;
// Keys whose single value is itself a comma list: commas there do not make a sweep, quotes do.
const std::set<std::string> kCommaValueKeys = {"workload.traced_layers", "serving.slo"};

// Derived seeds stay below 2^48: exact in a float64 column and short to read.
constexpr std::uint64_t kSeedMask = (std::uint64_t{1} << 48) - 1;

struct Line {
  std::string section;
  std::string key;
  std::string value;
};

// The INI syntax Boost.Program_options reads: '#' starts a comment anywhere on a line.
std::vector<Line> read_lines(const std::string& text, const std::string& path) {
  std::vector<Line> lines;
  std::istringstream in(text);
  std::string raw;
  std::string section;
  for (int number = 1; std::getline(in, raw); ++number) {
    const std::string line = std::string(trim(std::string_view(raw).substr(0, raw.find('#'))));
    if (line.empty()) continue;
    const std::string at = path + ": line " + std::to_string(number);
    if (line.front() == '[') {
      if (line.back() != ']' || std::string(trim(line.substr(1, line.size() - 2))).empty()) {
        fail_input(at, "expected [section], got '" + line + "'");
      }
      section = std::string(trim(line.substr(1, line.size() - 2)));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos || std::string(trim(line.substr(0, eq))).empty()) {
      fail_input(at, "expected key = value or [section], got '" + line + "'");
    }
    if (section.empty()) fail_input(at, "key '" + std::string(trim(line.substr(0, eq))) + "' is outside any [section]");
    lines.push_back({section, std::string(trim(line.substr(0, eq))), std::string(trim(line.substr(eq + 1)))});
  }
  return lines;
}

bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  double x = 0, y = 0;
  const auto rx = std::from_chars(a.data(), a.data() + a.size(), x);
  const auto ry = std::from_chars(b.data(), b.data() + b.size(), y);
  return rx.ec == std::errc() && rx.ptr == a.data() + a.size() && ry.ec == std::errc() &&
         ry.ptr == b.data() + b.size() && x == y;
}

// A key line of the sweep, outside [sweep].
struct Key {
  std::string section;
  std::string key;
  std::vector<std::string> values;  // a fixed key has one; a swept key more
  bool verbatim = false;            // a repeated key (e.g. [hardware] attach): each line as written
  bool policy = false;              // [policy] spec: rows, brace-expanded, never swept
  std::string name() const { return section + "." + key; }
};

class Expander {
 public:
  Expander(const std::string& text, const std::string& path) : path_(path) {
    const std::vector<Line> lines = read_lines(text, path);
    std::map<std::string, int> count;
    for (const Line& l : lines) ++count[l.section + "." + l.key];
    for (const Line& l : lines) {
      if (l.section == "sweep") {
        sweep_lines_.push_back(l);
        continue;
      }
      if (std::find(sections_.begin(), sections_.end(), l.section) == sections_.end()) sections_.push_back(l.section);
      keys_.push_back(parse_key(l, count[l.section + "." + l.key] > 1));
    }
    for (const Key& k : keys_) {
      if (k.values.size() > 1 && !k.policy) columns_.push_back(static_cast<std::size_t>(&k - keys_.data()));
      if (k.name() == "workload.seed") seed_listed_ = true;
    }
    for (const Line& l : sweep_lines_) parse_sweep_line(l);
  }

  Sweep expand() {
    Sweep sweep;
    sweep.path = path_;
    for (std::size_t c : columns_) {
      sweep.columns.push_back(keys_[c].name());
      sweep.column_values.push_back(keys_[c].values);
    }
    const std::vector<std::vector<std::size_t>> axes = make_axes();
    double total = 1;
    for (const auto& axis : axes) total *= static_cast<double>(keys_[columns_[axis.front()]].values.size());
    if (total > static_cast<double>(kMaxScenarios)) {
      fail_input(path_, "the sweep has " + std::to_string(static_cast<long long>(total)) + " scenarios; at most " +
                            std::to_string(kMaxScenarios) + " are allowed (split it, or add exclude/zip rules)");
    }
    plan_text();
    sweep.text_segments = std::make_shared<const std::vector<Segment>>(segments_);
    sweep.scenarios.reserve(static_cast<std::size_t>(total));
    sweep.value_indices.reserve(static_cast<std::size_t>(total) * columns_.size());
    // An odometer over the axes, the last one fastest; `choice` holds a value index per column.
    std::vector<std::size_t> digit(axes.size(), 0);
    std::vector<std::size_t> choice(columns_.size(), 0);
    for (bool more = true; more;) {
      for (std::size_t a = 0; a < axes.size(); ++a) {
        for (std::size_t column : axes[a]) choice[column] = digit[a];
      }
      if (!excluded(choice)) {
        sweep.scenarios.push_back(make_scenario(sweep.scenarios.size(), choice));
        for (const std::size_t c : choice) sweep.value_indices.push_back(static_cast<std::uint32_t>(c));
      }
      more = false;
      for (std::size_t a = axes.size(); a-- > 0;) {
        if (++digit[a] < keys_[columns_[axes[a].front()]].values.size()) {
          more = true;
          break;
        }
        digit[a] = 0;
      }
    }
    if (sweep.scenarios.empty()) fail_input(path_ + ": [sweep] exclude", "the exclude rules remove every scenario");
    // The hash of "kvsim-sweep 1\n", the columns and the scenario hashes, one a line, hashed in
    // pieces rather than joined (10^6 scenarios would make a 17 MB string).
    std::uint64_t identity = fnv1a(kFnvBasis, "kvsim-sweep 1\n");
    for (const std::string& column : sweep.columns) identity = fnv1a(fnv1a(identity, column), "\n");
    char hex[16];
    for (const SweepScenario& s : sweep.scenarios) identity = fnv1a(fnv1a(identity, hex64(s.text_hash, hex)), "\n");
    sweep.hash = hex64(splitmix64(identity));
    return sweep;
  }

 private:
  std::string where(const std::string& section, const std::string& key) const {
    return path_ + ": [" + section + "] " + key;
  }

  Key parse_key(const Line& l, bool repeated) const {
    Key k{l.section, l.key, {}, repeated, l.section == "policy" && l.key == "spec"};
    const std::string at = where(l.section, l.key);
    if (k.policy) {
      k.values = expand_braces(l.value, at);
    } else if (repeated || (kCommaValueKeys.count(k.name()) && l.value.find('"') == std::string::npos)) {
      // A repeated key is one value per line; a layer list such as 0,8,16 is one value (quote
      // items to sweep it).
      k.values = {l.value};
    } else {
      k.values = expand_list(l.value, at);
      for (const std::string& v : k.values) {
        if (v.find_first_of("{}") != std::string::npos) {
          fail_input(at, "braces expand only inside [policy] spec; write a list instead: a, b, c");
        }
      }
    }
    return k;
  }

  // A key as zip/exclude name it: "section.key", or "key" when only one section has it.
  std::size_t resolve(const std::string& name, const std::string& at) const {
    std::vector<std::size_t> found;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i].name() == name || (name.find('.') == std::string::npos && keys_[i].key == name)) {
        if (std::find_if(found.begin(), found.end(),
                         [&](std::size_t j) { return keys_[j].name() == keys_[i].name(); }) == found.end()) {
          found.push_back(i);
        }
      }
    }
    std::string swept;
    for (std::size_t c : columns_) swept += (swept.empty() ? "" : ", ") + keys_[c].name();
    if (swept.empty()) swept = "none";
    if (found.empty()) fail_input(at, "unknown key '" + name + "' (swept keys: " + swept + ")");
    if (found.size() > 1) {
      fail_input(at, "'" + name + "' is ambiguous (" + keys_[found[0]].name() + ", " + keys_[found[1]].name() +
                         "); write section.key");
    }
    const auto column = std::find(columns_.begin(), columns_.end(), found.front());
    if (column == columns_.end()) {
      fail_input(
          at, "key '" + keys_[found.front()].name() + "' is not swept (it has one value; swept keys: " + swept + ")");
    }
    return static_cast<std::size_t>(column - columns_.begin());
  }

  void parse_sweep_line(const Line& l) {
    const std::string at = where("sweep", l.key);
    if (l.key == "seed") {
      if (seed_given_) fail_input(at, "given twice");
      const auto [end, ec] = std::from_chars(l.value.data(), l.value.data() + l.value.size(), sweep_seed_);
      if (ec != std::errc() || end != l.value.data() + l.value.size()) {
        fail_input(at, "expected an integer >= 0, got '" + l.value + "'");
      }
      seed_given_ = true;
    } else if (l.key == "zip") {
      std::vector<std::size_t> group;
      for (const std::string& name : split_top_level(l.value, at)) {
        const std::size_t column = resolve(name, at);
        for (const auto& other : zips_) {
          if (std::find(other.begin(), other.end(), column) != other.end()) {
            fail_input(at, "key '" + keys_[columns_[column]].name() + "' is in two zip lines");
          }
        }
        if (std::find(group.begin(), group.end(), column) != group.end()) {
          fail_input(at, "key '" + keys_[columns_[column]].name() + "' is listed twice");
        }
        group.push_back(column);
      }
      if (group.size() < 2) fail_input(at, "expected two or more swept keys: zip = key1, key2");
      const Key& first = keys_[columns_[group.front()]];
      for (std::size_t column : group) {
        const Key& k = keys_[columns_[column]];
        if (k.values.size() != first.values.size()) {
          fail_input(at, first.name() + " has " + std::to_string(first.values.size()) + " values but " + k.name() +
                             " has " + std::to_string(k.values.size()) +
                             "; zipped keys advance together and need equal lengths");
        }
      }
      std::sort(group.begin(), group.end());
      zips_.push_back(group);
    } else if (l.key == "exclude") {
      std::vector<std::pair<std::size_t, std::size_t>> rule;  // (column, value index)
      std::string_view rest = l.value;
      while (true) {
        const auto amp = rest.find('&');
        const std::string condition = std::string(trim(rest.substr(0, amp)));
        const auto eq = condition.find('=');
        if (eq == std::string::npos || std::string(trim(condition.substr(0, eq))).empty() ||
            std::string(trim(condition.substr(eq + 1))).empty()) {
          fail_input(at, "expected key=value & key=value, got '" + l.value + "'");
        }
        const std::size_t column = resolve(std::string(trim(condition.substr(0, eq))), at);
        const std::string value = std::string(trim(condition.substr(eq + 1)));
        const Key& k = keys_[columns_[column]];
        std::optional<std::size_t> index;
        for (std::size_t v = 0; v < k.values.size(); ++v) {
          if (same_value(k.values[v], value)) index = v;
        }
        if (!index) {
          std::string values;
          for (const std::string& v : k.values) values += (values.empty() ? "" : ", ") + v;
          fail_input(at, k.name() + " has no value '" + value + "' (its values: " + values + ")");
        }
        for (const auto& [c, v] : rule) {
          if (c == column) fail_input(at, "key '" + k.name() + "' appears twice in one exclude line");
        }
        rule.emplace_back(column, *index);
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
      }
      excludes_.push_back(rule);
    } else {
      fail_input(at, "unknown key (the [sweep] section takes seed, zip and exclude)");
    }
  }

  // Each axis: the columns that advance together (one, or a zip group), ordered by their first
  // column in file order.
  std::vector<std::vector<std::size_t>> make_axes() const {
    std::vector<std::vector<std::size_t>> axes;
    for (std::size_t c = 0; c < columns_.size(); ++c) {
      const auto zip = std::find_if(zips_.begin(), zips_.end(),
                                    [&](const auto& g) { return std::find(g.begin(), g.end(), c) != g.end(); });
      if (zip == zips_.end()) axes.push_back({c});
      else if (zip->front() == c) axes.push_back(*zip);
    }
    return axes;
  }

  bool excluded(const std::vector<std::size_t>& choice) const {
    return std::any_of(excludes_.begin(), excludes_.end(), [&](const auto& rule) {
      return std::all_of(rule.begin(), rule.end(), [&](const auto& cv) { return choice[cv.first] == cv.second; });
    });
  }

  // The scenario text as segments (issue 17 item 9: expansion was ~0.2 ms a scenario): fixed text
  // is joined once; a swept key's line and the derived seed line are the only parts that change.
  using Segment = Sweep::TextSegment;

  void plan_text() {
    column_of_.assign(keys_.size(), -1);
    for (std::size_t c = 0; c < columns_.size(); ++c) column_of_[columns_[c]] = static_cast<std::ptrdiff_t>(c);
    segments_.clear();
    const auto add_fixed = [&](const std::string& text) {
      if (!segments_.empty() && segments_.back().column < 0 && !segments_.back().seed) segments_.back().fixed += text;
      else segments_.push_back({text, -1, false});
    };
    bool wrote_workload = false;
    for (const std::string& section : sections_) {
      add_fixed("[" + section + "]\n");
      for (std::size_t k = 0; k < keys_.size(); ++k) {
        const Key& key = keys_[k];
        if (key.section != section) continue;
        if (key.policy) {
          for (const std::string& spec : key.values) add_fixed(key.key + " = " + spec + "\n");
        } else if (column_of_[k] >= 0) {
          segments_.push_back({key.key + " = ", column_of_[k], false});
        } else {
          add_fixed(key.key + " = " + key.values.front() + "\n");
        }
      }
      if (section == "workload" && !seed_listed_) {
        segments_.push_back({"", -1, true});
        wrote_workload = true;
      }
    }
    if (!seed_listed_ && !wrote_workload) {
      add_fixed("[workload]\n");
      segments_.push_back({"", -1, true});
    }
    // The seed's basis: [model] and [workload] keys but the seed, sorted by key (stable: repeated
    // keys keep file order), so that reordering lines of the file does not change it.
    basis_.clear();
    seed_key_ = -1;
    for (std::size_t k = 0; k < keys_.size(); ++k) {
      const Key& key = keys_[k];
      if (key.name() == "workload.seed") seed_key_ = static_cast<std::ptrdiff_t>(k);
      if ((key.section == "model" || key.section == "workload") && key.name() != "workload.seed") basis_.push_back(k);
    }
    std::stable_sort(basis_.begin(), basis_.end(),
                     [&](std::size_t a, std::size_t b) { return keys_[a].name() < keys_[b].name(); });
    basis_names_.clear();
    for (std::size_t k : basis_) basis_names_.push_back(keys_[k].name());
    previous_choice_.clear();
    segment_offset_.assign(segments_.size(), 0);
    segment_state_.assign(segments_.size(), kFnvBasis);
    text_.clear();
  }

  const std::string& value_of(std::size_t key, const std::vector<std::size_t>& choice) const {
    const std::ptrdiff_t column = column_of_[key];
    return keys_[key].values[column < 0 ? 0 : choice[static_cast<std::size_t>(column)]];
  }

  bool changed(std::ptrdiff_t column, const std::vector<std::size_t>& choice) const {
    return previous_choice_.empty() ||
           choice[static_cast<std::size_t>(column)] != previous_choice_[static_cast<std::size_t>(column)];
  }

  // Consecutive scenarios of the odometer share most of their text: the text and its FNV state are
  // kept per segment, and only the segments from the first changed one on are rebuilt and hashed.
  SweepScenario make_scenario(std::size_t index, const std::vector<std::size_t>& choice) {
    SweepScenario s;
    s.index = index;

    // The seed: listed, or from the sweep seed and the values that shape the trace.
    if (seed_listed_) {
      s.seed = value_of(static_cast<std::size_t>(seed_key_), choice);
    } else {
      bool basis_changed = previous_choice_.empty();
      for (std::size_t k : basis_)
        basis_changed = basis_changed || (column_of_[k] >= 0 && changed(column_of_[k], choice));
      if (basis_changed) {
        std::uint64_t h = kFnvBasis;
        for (const std::size_t& k : basis_) {
          h = fnv1a(fnv1a(fnv1a(fnv1a(h, basis_names_[&k - basis_.data()]), "="), value_of(k, choice)), "\n");
        }
        derived_seed_ = std::to_string(hash_key(sweep_seed_, splitmix64(h)) & kSeedMask);
      }
      s.seed = derived_seed_;
    }

    std::size_t first = 0;
    if (!previous_choice_.empty()) {
      for (first = 0; first < segments_.size(); ++first) {
        const Segment& segment = segments_[first];
        if (segment.column >= 0 && changed(segment.column, choice)) break;
        if (segment.seed && s.seed != text_seed_) break;
      }
    }
    if (first < segments_.size()) {
      text_.resize(segment_offset_[first]);
      std::uint64_t h = segment_state_[first];
      for (std::size_t i = first; i < segments_.size(); ++i) {
        const Segment& segment = segments_[i];
        segment_offset_[i] = text_.size();
        segment_state_[i] = h;
        const std::size_t start = text_.size();
        if (segment.seed) {
          text_ += "seed = ";
          text_ += s.seed;
          text_ += '\n';
        } else {
          text_ += segment.fixed;
          if (segment.column >= 0) {
            const auto column = static_cast<std::size_t>(segment.column);
            text_ += keys_[columns_[column]].values[choice[column]];
            text_ += '\n';
          }
        }
        h = fnv1a(h, std::string_view(text_).substr(start));
      }
      text_hash_ = splitmix64(h);
      text_seed_ = s.seed;
      previous_choice_ = choice;
    }
    s.text_hash = text_hash_;
    return s;
  }

  std::string path_;
  std::vector<std::string> sections_;  // in order of first appearance, without [sweep]
  std::vector<Key> keys_;              // in file order
  std::vector<std::size_t> columns_;   // indices into keys_ of the swept keys
  std::vector<Line> sweep_lines_;
  bool seed_listed_ = false;
  bool seed_given_ = false;
  std::uint64_t sweep_seed_ = 1;
  std::vector<std::vector<std::size_t>> zips_;                              // column indices, sorted
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> excludes_;  // (column, value index)
  // plan_text(), and the previous scenario's text (make_scenario)
  std::vector<std::ptrdiff_t> column_of_;  // per key: its column, or -1
  std::vector<Segment> segments_;
  std::vector<std::size_t> basis_;        // keys of the derived seed, sorted by name
  std::vector<std::string> basis_names_;  // their "section.key"
  std::ptrdiff_t seed_key_ = -1;          // the (last) [workload] seed line, when listed
  std::vector<std::size_t> previous_choice_;
  std::vector<std::size_t> segment_offset_;
  std::vector<std::uint64_t> segment_state_;
  std::string text_, text_seed_, derived_seed_;
  std::uint64_t text_hash_ = 0;
};

}  // namespace

std::string Sweep::describe(std::size_t index) const {
  std::string text = "scenario " + std::to_string(index);
  static_cast<void>(scenarios.at(index));  // out_of_range for an index past the expansion
  if (columns.empty()) return text;
  text += " (";
  for (std::size_t c = 0; c < columns.size(); ++c) text += (c ? ", " : "") + columns[c] + "=" + value(index, c);
  return text + ")";
}

std::string Sweep::text(std::size_t index) const {
  const SweepScenario& s = scenarios.at(index);
  std::string text;
  for (const TextSegment& segment : *text_segments) {
    if (segment.seed) {
      text += "seed = " + s.seed + "\n";
      continue;
    }
    text += segment.fixed;
    if (segment.column >= 0) text += value(index, static_cast<std::size_t>(segment.column)) + "\n";
  }
  return text;
}

std::string Sweep::folder_name(std::size_t index) const {
  char number[24];
  std::snprintf(number, sizeof number, "%06zu", index);
  return std::string(number) + "-" + hash_hex(index);
}

std::vector<std::string> Sweep::values(std::size_t index) const {
  std::vector<std::string> out;
  for (std::size_t c = 0; c < columns.size(); ++c) out.push_back(value(index, c));
  return out;
}

std::string Sweep::hash_hex(std::size_t index) const { return hex64(scenarios.at(index).text_hash); }

Sweep expand_sweep(const std::string& text, const std::string& path) { return Expander(text, path).expand(); }

Sweep load_sweep(const std::string& path) { return expand_sweep(read_ini_text(path), path); }

std::string sweep_help() {
  return R"(Sweep file: a scenario file (kvsim run --help) whose values may be lists or ranges.
  prompt_tokens = 8192, 32768, 131072     a list: one scenario per value
  prompt_tokens = 8192..131072 x2         geometric range, both ends included: 8192 16384 ... 131072
  chunk_tokens  = 1024..4096 +1024        arithmetic range: 1024 2048 3072 4096
  fidelity_queries = 8..10                integers, step 1
  tp = 1, 2..8 x2                         items combine: 1 2 4 8
  Values split at top-level commas only: commas inside (), [], {} or "quotes" stay, so
  placement = offload(tier=cxl, prefetch=layer) is one value. Non-integer ranges are computed as
  start + i*step (no accumulated error) and printed with 12 significant digits (0.1..0.5 +0.1
  gives 0.1 0.2 0.3 0.4 0.5). traced_layers = 0,8,16 is one layer list (so is [serving] slo); to
  sweep such keys, quote each value: traced_layers = "0,8", "0,8,16,24". A repeated key
  (attach = ...) is used as written, every line in every scenario.
  [workload] seeds = 5 replays 5 draws from each scenario's own seed (the tables gain <metric>_ci95
  columns); seeds = 1, 5, 20 sweeps the number of draws. A list of seeds cannot be given: every
  scenario of a sweep has its own seed.
  The scenarios are the cartesian product of the swept keys, the first key in the file varying
  slowest; scenario indices (0-based) follow that order.
[policy] spec lines are rows of every scenario, not scenarios: `full` plus each spec line, in
  order. Braces inside a spec give alternatives, all in the same scenario:
  spec = snapkv(budget={0.1..0.5 +0.1}, prefill={post_fill,chunk})    10 specs
[sweep] section (optional):
  seed = 1                  derives each scenario's [workload] seed from this and the scenario's
                            [model] and [workload] values (not its policies or hardware), unless
                            the file gives [workload] seed itself (then that value, or list, is used)
  zip = prompt_tokens, chunk_tokens          listed keys advance together (equal lengths)
  exclude = prompt_tokens=131072 & tp=1      drop combinations matching every condition
                            (repeatable; keys as section.key or a key unique to one section)
)";
}

}  // namespace kvsim
