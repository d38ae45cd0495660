#pragma once
// The parts of summary.json's "scenario" object (DESIGN.md §7) that single-request and serving runs
// share, written by one function each so the two reports cannot drift apart.
#include <string>

#include "sim/scenario.h"
#include "traces/model_shape.h"
#include "util/json.h"

namespace kvsim {

// "model": {name, num_layers, num_q_heads, num_kv_heads, head_dim, kv_bits, rope_theta, and
// rope_scaling {type, its parameters} unless none}
void write_model_json(JsonWriter& json, const ModelShape& model);

// "hardware": {preset, device, attach, tp, placement}
void write_hardware_json(JsonWriter& json, const Scenario& scenario, const std::string& device_name);

}  // namespace kvsim
