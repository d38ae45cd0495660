#include "sim/scenario_json.h"

namespace kvsim {

void write_model_json(JsonWriter& json, const ModelShape& model) {
  json.key("model");
  json.begin_object();
  json.field("name", model.name);
  json.field("num_layers", model.num_layers);
  json.field("num_q_heads", model.num_q_heads);
  json.field("num_kv_heads", model.num_kv_heads);
  json.field("head_dim", model.head_dim);
  json.field("kv_bits", model.kv_bits);
  json.field("rope_theta", model.rope_theta);
  if (!model.rope_scaling.none()) {  // absent: none, as in trace files
    const RopeScaling& r = model.rope_scaling;
    json.key("rope_scaling");
    json.begin_object();
    json.field("type", r.type);
    if (r.factor) json.field("factor", *r.factor);
    if (r.low_freq_factor) json.field("low_freq_factor", *r.low_freq_factor);
    if (r.high_freq_factor) json.field("high_freq_factor", *r.high_freq_factor);
    if (r.original_max_position_embeddings) {
      json.field("original_max_position_embeddings", *r.original_max_position_embeddings);
    }
    json.end_object();
  }
  json.end_object();
}

void write_hardware_json(JsonWriter& json, const Scenario& scenario, const std::string& device_name) {
  json.key("hardware");
  json.begin_object();
  json.field("preset", scenario.hardware_preset);
  json.field("device", device_name);
  json.key("attach");
  json.begin_array();
  for (const auto& a : scenario.hardware_attach) json.value(a);
  json.end_array();
  json.field("tp", scenario.tensor_parallel);
  json.field("placement", scenario.placement.spec());
  json.end_object();
}

}  // namespace kvsim
