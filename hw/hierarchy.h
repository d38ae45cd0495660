#pragma once
// The memory hierarchy as a graph (Boost.Graph): tiers are vertices, each link is a pair of
// directed edges (one per direction, each with the link's full per-direction bandwidth).
// Transfers take the path with the fewest links; concurrent transfers share each directed link
// fairly, so a set of transfers that starts together finishes when the most loaded link drains.
#include <boost/graph/adjacency_list.hpp>
#include <string>
#include <vector>

#include "hw/hardware.h"

namespace kvsim {

struct Transfer {
  std::string from;  // tier names
  std::string to;
  double bytes = 0;
};

struct LinkLoad {
  std::string link;  // link name
  std::string from;  // direction
  std::string to;
  double bytes = 0;
};

class Hierarchy {
 public:
  explicit Hierarchy(const Hardware& hardware);

  // Link indices (into hardware.links) along the path from `from` to `to`, with directions.
  // Throws InputError if either tier is unknown or no path joins them.
  struct Hop {
    int link = 0;
    bool forward = true;  // traversed from link.from to link.to
  };
  std::vector<Hop> path(const std::string& from, const std::string& to) const;

  // Slowest link on the path (bytes/s); infinity when from == to.
  double bottleneck_bytes_per_s(const std::string& from, const std::string& to) const;

  // Time for `transfers` started together: max over directed links of (bytes through it /
  // bandwidth), plus the largest path latency among them. Adds the bytes to `loads`.
  double transfer_time_s(const std::vector<Transfer>& transfers, std::vector<LinkLoad>* loads = nullptr) const;

  // Time to read `fetch_bytes` from tier `lower` into `top` and write `spill_bytes` the other way,
  // started together: the links' time (transfer_time_s), or the lower tier's own read or write
  // bandwidth where that is slower. Adds the link bytes to `loads`.
  double tier_transfer_time_s(const std::string& top, const std::string& lower, double fetch_bytes, double spill_bytes,
                              std::vector<LinkLoad>* loads = nullptr) const;

  // Graphviz text of the hierarchy.
  std::string to_dot() const;

  const Hardware& hardware() const { return hardware_; }

 private:
  struct EdgeInfo {
    int link = 0;
    bool forward = true;
  };
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property, EdgeInfo>;
  int vertex(const std::string& tier) const;
  std::string where() const;  // the hardware files, for messages (the device name when built in memory)

  Hardware hardware_;
  Graph graph_;
};

}  // namespace kvsim
