// kvsim inspect: what a trace file holds, after checking every value in it.
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numbers>
#include <sstream>

#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "traces/rope.h"
#include "traces/trace_file.h"
#include "util/error.h"

namespace kvsim::cli {
namespace {

namespace po = boost::program_options;

constexpr std::size_t kMaxRuns = 6;

// Sorted integers as runs: "0-3, 7, 10-12", cut after `max_runs` runs.
std::string runs_text(const std::vector<std::int64_t>& values, std::size_t max_runs = kMaxRuns) {
  std::vector<std::pair<std::int64_t, std::int64_t>> runs;
  for (const std::int64_t v : values) {
    if (!runs.empty() && runs.back().second + 1 == v) {
      runs.back().second = v;
    } else {
      runs.emplace_back(v, v);
    }
  }
  std::ostringstream out;
  for (std::size_t i = 0; i < runs.size() && i < max_runs; ++i) {
    out << (i ? ", " : "") << runs[i].first;
    if (runs[i].second != runs[i].first) out << "-" << runs[i].second;
  }
  if (runs.size() > max_runs) out << ", ... (" << runs.size() << " runs)";
  return out.str();
}

std::string number_text(double value) {
  std::ostringstream out;
  if (value == std::floor(value) && std::abs(value) < 1e15) {
    out << static_cast<std::int64_t>(value);
  } else {
    out << value;
  }
  return out.str();
}

// One line per layer; identical lines of consecutive traced layers are printed once.
std::string layer_summary(const LayerTrace& layer) {
  std::ostringstream out;
  out << layer.query_positions.size() << " queries";
  if (!layer.query_positions.empty()) out << " at positions " << runs_text(layer.query_positions);
  if (!layer.recon_queries.empty()) out << "; " << layer.recon_queries.front().rows() << " recon queries";
  if (!layer.recon_passes.empty()) {
    // Format 1.1: each pass as [context begin, end) re-read and its repeat tokens (recon_keys rows).
    out << " in " << layer.recon_passes.size() << " recon passes (context [begin,end) / repeat tokens):";
    for (const ReconPass& p : layer.recon_passes) {
      out << " [" << p.context_begin << "," << p.context_end << ")/" << (p.key_end - p.key_begin);
    }
  }
  if (!layer.needle_heads.empty()) {
    out << "; needle heads";
    for (const int head : layer.needle_heads) out << " " << head;
  }
  if (!layer.head_archetypes.empty()) {
    out << "; archetypes";
    for (const std::string& archetype : layer.head_archetypes) out << " " << archetype;
  }
  return out.str();
}

// "llama3 (factor 8, ...): 35 of 64 rotary pairs scaled" -- pairs whose frequency the scaling changes.
std::string rope_scaling_summary(const ModelShape& m) {
  if (m.rope_scaling.none()) return "none";
  const std::vector<double> plain = rope_inv_freq(m.head_dim, m.rope_theta);
  const std::vector<double> scaled = rope_inv_freq(m);
  std::size_t changed = 0;
  for (std::size_t i = 0; i < plain.size(); ++i) changed += scaled[i] != plain[i] ? 1 : 0;
  return m.rope_scaling.text() + ": " + std::to_string(changed) + " of " + std::to_string(plain.size()) +
         " rotary pairs scaled";
}

// One line per rotary pair: the frequency kvsim rotates with, the unscaled one, the wavelength.
void print_rope_frequencies(const ModelShape& m) {
  const std::vector<double> plain = rope_inv_freq(m.head_dim, m.rope_theta);
  const std::vector<double> scaled = rope_inv_freq(m);
  std::cout << "rope frequencies (pair, inv_freq, unscaled inv_freq, wavelength in tokens):\n";
  for (std::size_t i = 0; i < scaled.size(); ++i) {
    char line[160];
    std::snprintf(line, sizeof line, "  %zu %.17g %.17g %.6g\n", i, scaled[i], plain[i],
                  2.0 * std::numbers::pi / scaled[i]);
    std::cout << line;
  }
}

void print_header(const std::string& path, const TraceHeader& header) {
  const ModelShape& m = header.model;
  std::cout << "file:          " << path << "\n"
            << "format:        kvsim-trace version 1." << header.version_minor << "\n"
            << "source:        " << header.source;
  if (header.source == "synthetic") std::cout << ", seed " << header.seed;
  std::cout << "\n";
  if (!header.generator.empty()) {
    std::cout << "generator:    ";
    for (const auto& [key, value] : header.generator) std::cout << " " << key << "=" << value;
    std::cout << "\n";
  }
  std::cout << "model:         " << m.name << ": " << m.num_layers << " layers, " << m.num_q_heads << " q heads, "
            << m.num_kv_heads << " kv heads, head_dim " << m.head_dim << ", kv_bits " << m.kv_bits << ", rope_theta "
            << number_text(m.rope_theta) << ", GQA group " << m.group_size() << "\n"
            << "rope scaling:  " << rope_scaling_summary(m) << "\n";
  const std::vector<std::int64_t> layers(header.traced_layers.begin(), header.traced_layers.end());
  std::cout << "traced layers: " << runs_text(layers, layers.size()) << " (" << layers.size() << " of " << m.num_layers
            << ")\n"
            << "requests:      " << header.requests.size() << "\n";
}

}  // namespace

int cmd_inspect(const Args& args) {
  po::options_description options("kvsim inspect FILE.h5 [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("file", po::value<std::string>(), "HDF5 trace file (format v1)")
      ("rope-frequencies", "also print the RoPE frequency of every rotary pair (rope_theta and rope_scaling applied)")
      ("quiet,q", "no progress output on stderr");
  // clang-format on
  po::positional_options_description positional;
  positional.add("file", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim inspect");
  if (v.count("help")) {
    std::cout << options << "\n"
              << "Reads every layer of every request of an attention trace file and checks it: root\n"
                 "attributes, dataset shapes against the model, query positions sorted and within the\n"
                 "request, every key, value and query finite. Then prints the model, the traced layers\n"
                 "and, per request, its token counts, planted needles, the positions of the stored\n"
                 "queries per layer (layers with identical contents share a line), recon queries and their\n"
                 "passes (format 1.1: the context span each re-reads and its repeat tokens), needle\n"
                 "heads and head archetypes, and a last line `valid`. The model lines include the RoPE\n"
                 "scaling (root attribute rope_scaling_type and its parameters; absent: none) and how many\n"
                 "rotary pairs it changes. A problem is reported as one line\n"
                 "naming the dataset or attribute, with exit status 2.\n\n"
                 "Trace files come from `kvsim synth` or from recording a real model (DESIGN.md §3).\n"
                 "Example:\n"
                 "  kvsim inspect traces/llama3-8b-synth.h5\n";
    return 0;
  }
  if (!v.count("file")) fail_input("kvsim inspect", "missing FILE.h5 (see kvsim inspect --help)");
  const std::string path = v["file"].as<std::string>();
  const bool quiet = v.count("quiet") > 0;

  // The same checks as validate_trace_file, done here so each layer is read once and summarised.
  const std::unique_ptr<TraceSource> source = open_trace_file(path);
  const TraceHeader& header = source->header();
  const std::size_t total = header.requests.size() * header.traced_layers.size();
  std::size_t done = 0;
  std::vector<std::vector<std::string>> summaries;  // [request][traced layer]
  for (const RequestInfo& request : header.requests) {
    auto& lines = summaries.emplace_back();
    for (const int layer : header.traced_layers) {
      lines.push_back(layer_summary(source->load_layer(request.id, layer)));
      ++done;
      if (!quiet)
        std::cerr << "checked request " << request.id << " layer " << layer << " (" << done << "/" << total << ")\n";
    }
  }

  print_header(path, header);
  if (v.count("rope-frequencies")) print_rope_frequencies(header.model);
  for (std::size_t r = 0; r < header.requests.size(); ++r) {
    const RequestInfo& request = header.requests[r];
    std::cout << "request " << request.id << ": prompt " << request.prompt_tokens << " + generated "
              << request.generated_tokens << " = " << request.total_tokens() << " tokens\n";
    if (!request.needles.empty()) {
      std::cout << "  needles:";
      for (const NeedleSpan& span : request.needles) std::cout << " [" << span.begin << ", " << span.end << ")";
      std::cout << "\n";
    }
    const std::vector<std::string>& lines = summaries[r];
    for (std::size_t first = 0; first < lines.size();) {
      std::size_t last = first;
      while (last + 1 < lines.size() && lines[last + 1] == lines[first]) ++last;
      const std::vector<std::int64_t> layers(header.traced_layers.begin() + static_cast<std::ptrdiff_t>(first),
                                             header.traced_layers.begin() + static_cast<std::ptrdiff_t>(last) + 1);
      std::cout << "  " << (first == last ? "layer " : "layers ") << runs_text(layers, layers.size()) << ": "
                << lines[first] << "\n";
      first = last + 1;
    }
  }
  std::cout << "valid\n";
  return 0;
}

}  // namespace kvsim::cli
