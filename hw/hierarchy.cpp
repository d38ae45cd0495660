#include "hw/hierarchy.h"

#include <algorithm>
#include <boost/graph/breadth_first_search.hpp>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>

#include "util/error.h"
#include "util/units.h"

namespace kvsim {

Hierarchy::Hierarchy(const Hardware& hardware) : hardware_(hardware), graph_(hardware.tiers.size()) {
  for (std::size_t i = 0; i < hardware_.links.size(); ++i) {
    const Link& l = hardware_.links[i];
    boost::add_edge(vertex(l.from), vertex(l.to), EdgeInfo{static_cast<int>(i), true}, graph_);
    boost::add_edge(vertex(l.to), vertex(l.from), EdgeInfo{static_cast<int>(i), false}, graph_);
  }
}

std::string Hierarchy::where() const {
  return hardware_.source.empty() ? "hardware " + hardware_.device.name : hardware_.source;
}

int Hierarchy::vertex(const std::string& tier) const {
  for (std::size_t i = 0; i < hardware_.tiers.size(); ++i) {
    if (hardware_.tiers[i].name == tier) return static_cast<int>(i);
  }
  fail_input(where(), "no tier named '" + tier + "'");
}

std::vector<Hierarchy::Hop> Hierarchy::path(const std::string& from, const std::string& to) const {
  const int source = vertex(from);
  const int target = vertex(to);
  if (source == target) return {};
  using Edge = Graph::edge_descriptor;
  std::vector<Edge> via(boost::num_vertices(graph_));
  std::vector<bool> reached(boost::num_vertices(graph_), false);
  reached[static_cast<std::size_t>(source)] = true;
  // Fewest links first; ties go to the edge added first (the file's order), so paths are stable.
  struct Recorder : boost::default_bfs_visitor {
    std::vector<Edge>* via;
    std::vector<bool>* reached;
    void tree_edge(Edge e, const Graph& g) const {
      (*via)[boost::target(e, g)] = e;
      (*reached)[boost::target(e, g)] = true;
    }
  };
  Recorder recorder;
  recorder.via = &via;
  recorder.reached = &reached;
  boost::breadth_first_search(graph_, static_cast<Graph::vertex_descriptor>(source), boost::visitor(recorder));
  if (!reached[static_cast<std::size_t>(target)]) {
    fail_input(where(), "no path of links from tier '" + from + "' to tier '" + to + "'");
  }
  std::vector<Hop> hops;
  for (auto v = static_cast<Graph::vertex_descriptor>(target); v != static_cast<Graph::vertex_descriptor>(source);) {
    const Edge e = via[v];
    hops.insert(hops.begin(), Hop{graph_[e].link, graph_[e].forward});
    v = boost::source(e, graph_);
  }
  return hops;
}

double Hierarchy::bottleneck_bytes_per_s(const std::string& from, const std::string& to) const {
  double slowest = std::numeric_limits<double>::infinity();
  for (const Hop& hop : path(from, to))
    slowest = std::min(slowest, hardware_.links[static_cast<std::size_t>(hop.link)].effective_bytes_per_s());
  return slowest;
}

double Hierarchy::transfer_time_s(const std::vector<Transfer>& transfers, std::vector<LinkLoad>* loads) const {
  std::map<std::pair<int, bool>, double> bytes;  // (link, direction) -> bytes
  double latency = 0.0;
  for (const Transfer& t : transfers) {
    if (t.bytes <= 0) continue;
    double path_latency = 0.0;
    for (const Hop& hop : path(t.from, t.to)) {
      bytes[{hop.link, hop.forward}] += t.bytes;
      path_latency += hardware_.links[static_cast<std::size_t>(hop.link)].latency_s;
    }
    latency = std::max(latency, path_latency);
  }
  double drain = 0.0;
  for (const auto& [key, b] : bytes) {
    const Link& link = hardware_.links[static_cast<std::size_t>(key.first)];
    drain = std::max(drain, b / link.effective_bytes_per_s());
    if (loads) {
      loads->push_back({link.name, key.second ? link.from : link.to, key.second ? link.to : link.from, b});
    }
  }
  return drain + latency;
}

double Hierarchy::tier_transfer_time_s(const std::string& top, const std::string& lower, double fetch_bytes,
                                       double spill_bytes, std::vector<LinkLoad>* loads) const {
  const Tier& low = hardware_.tier(lower);
  const double links_s = transfer_time_s({{lower, top, fetch_bytes}, {top, lower, spill_bytes}}, loads);
  return std::max({links_s, fetch_bytes / low.read_bytes_per_s, spill_bytes / low.write_bytes_per_s});
}

std::string Hierarchy::to_dot() const {
  std::ostringstream out;
  out << "digraph \"" << hardware_.device.name << "\" {\n  rankdir=LR;\n  node [shape=box];\n";
  for (const Tier& t : hardware_.tiers) {
    out << "  \"" << t.name << "\" [label=\"" << t.name << " (" << t.kind << ")";
    if (t.kind != "switch") {
      out << "\\n"
          << format_quantity(t.capacity_bytes, UnitKind::kBytes) << ", "
          << format_quantity(t.read_bytes_per_s, UnitKind::kBytesPerSecond);
    }
    out << "\"" << (t.name == hardware_.device.compute_tier ? ", style=bold" : "") << "];\n";
  }
  for (const Link& l : hardware_.links) {
    out << "  \"" << l.from << "\" -> \"" << l.to << "\" [dir=both, label=\"" << l.name << "\\n"
        << format_quantity(l.bytes_per_s, UnitKind::kBytesPerSecond) << "/dir\"];\n";
  }
  out << "}\n";
  return out.str();
}

}  // namespace kvsim
