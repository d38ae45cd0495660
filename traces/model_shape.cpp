#include "traces/model_shape.h"

#include <cmath>
#include <sstream>

#include "util/error.h"
#include "util/exact_number.h"

namespace kvsim {

namespace {

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Which parameters each type takes (HF transformers' _validate_*_parameters in modeling_rope_utils.py).
void validate_rope_scaling(const RopeScaling& r, const std::string& where) {
  struct Param {
    const char* key;
    bool given;
  };
  const Param params[] = {
      {"rope_scaling_factor", r.factor.has_value()},
      {"rope_scaling_low_freq_factor", r.low_freq_factor.has_value()},
      {"rope_scaling_high_freq_factor", r.high_freq_factor.has_value()},
      {"rope_scaling_original_max_position_embeddings", r.original_max_position_embeddings.has_value()}};
  auto require = [&](std::size_t count, const char* needs) {
    for (std::size_t i = 0; i < std::size(params); ++i) {
      if (i < count && !params[i].given) {
        fail_input(where,
                   std::string(params[i].key) + " is missing; rope_scaling_type = " + r.type + " needs " + needs);
      }
      if (i >= count && params[i].given) {
        fail_input(where, std::string(params[i].key) + " is given, but rope_scaling_type = " + r.type +
                              " takes no such parameter (it needs " + needs + ")");
      }
    }
  };
  auto positive = [&](const char* key, double value) {
    if (!(value > 0.0) || !std::isfinite(value)) {
      fail_input(where, std::string(key) + " must be a positive number, got " + number(value));
    }
  };
  if (r.type == "none") {
    require(0, "no parameters");
  } else if (r.type == "linear") {
    require(1, "rope_scaling_factor");
    positive("rope_scaling_factor", *r.factor);
  } else if (r.type == "llama3") {
    require(4,
            "rope_scaling_factor, rope_scaling_low_freq_factor, rope_scaling_high_freq_factor and "
            "rope_scaling_original_max_position_embeddings");
    positive("rope_scaling_factor", *r.factor);
    positive("rope_scaling_low_freq_factor", *r.low_freq_factor);
    positive("rope_scaling_high_freq_factor", *r.high_freq_factor);
    if (!(*r.high_freq_factor > *r.low_freq_factor)) {
      fail_input(where, "rope_scaling_high_freq_factor (" + number(*r.high_freq_factor) +
                            ") must be greater than rope_scaling_low_freq_factor (" + number(*r.low_freq_factor) + ")");
    }
    if (*r.original_max_position_embeddings <= 0) {
      fail_input(where, "rope_scaling_original_max_position_embeddings must be a positive integer, got " +
                            std::to_string(*r.original_max_position_embeddings));
    }
  } else if (r.type == "yarn") {
    // Refused rather than approximated: YaRN also scales cos/sin by an attention factor, and its
    // ramp has changed between transformers versions (original_max_position_embeddings, truncate).
    fail_input(where,
               "rope_scaling_type = yarn is not supported (kvsim does not model YaRN's frequency ramp and "
               "attention factor); supported: none, linear, llama3");
  } else {
    fail_input(where, "rope_scaling_type is '" + r.type + "'; expected none, linear or llama3 (yarn is not supported)");
  }
}

}  // namespace

std::string RopeScaling::text() const {
  if (type == "none") return type;
  std::ostringstream out;
  out << type << " (";
  const char* sep = "";
  auto field = [&](const char* name, const auto& value) {
    if (!value) return;
    out << sep << name << " " << *value;
    sep = ", ";
  };
  field("factor", factor);
  field("low_freq_factor", low_freq_factor);
  field("high_freq_factor", high_freq_factor);
  field("original_max_position_embeddings", original_max_position_embeddings);
  out << ")";
  return out.str();
}

void ModelShape::validate(const std::string& where) const {
  // The upper bound keeps every product of these (bytes per token, entries per request) far from
  // int64 overflow; memory checks refuse real excess earlier (the largest models have ~10^2 layers).
  constexpr long long kMaxDimension = 1 << 16;
  auto positive = [&](const char* key, long long value) {
    if (value <= 0 || value > kMaxDimension) {
      fail_input(where, std::string(key) + " must be an integer in [1, " + std::to_string(kMaxDimension) + "], got " +
                            std::to_string(value));
    }
  };
  positive("num_layers", num_layers);
  positive("num_q_heads", num_q_heads);
  positive("num_kv_heads", num_kv_heads);
  positive("head_dim", head_dim);
  if (num_q_heads % num_kv_heads != 0) {
    fail_input(where, "num_q_heads (" + std::to_string(num_q_heads) + ") must be a multiple of num_kv_heads (" +
                          std::to_string(num_kv_heads) + ")");
  }
  if (head_dim % 2 != 0)
    fail_input(where, "head_dim must be even (RoPE rotates pairs), got " + std::to_string(head_dim));
  if (kv_bits != 2 && kv_bits != 4 && kv_bits != 8 && kv_bits != 16 && kv_bits != 32) {
    fail_input(where, "kv_bits must be one of 2, 4, 8, 16, 32, got " + std::to_string(kv_bits));
  }
  if (!(rope_theta > 0.0 && std::isfinite(rope_theta))) {
    fail_input(where, "rope_theta must be a positive finite number, got " + std::to_string(rope_theta));
  }
  validate_rope_scaling(rope_scaling, where);
  if (max_position_embeddings < 0) {
    fail_input(where, "max_position_embeddings must be a positive integer (or absent), got " +
                          std::to_string(max_position_embeddings));
  }
}

std::string model_shape_key(const ModelShape& m) {
  const auto optional_double = [](const std::optional<double>& v) {
    return v ? exact_double_text(*v) : std::string("-");
  };
  const RopeScaling& r = m.rope_scaling;
  return "name=" + std::to_string(m.name.size()) + ":" + m.name + " layers=" + std::to_string(m.num_layers) +
         " q_heads=" + std::to_string(m.num_q_heads) + " kv_heads=" + std::to_string(m.num_kv_heads) +
         " head_dim=" + std::to_string(m.head_dim) + " kv_bits=" + std::to_string(m.kv_bits) +
         " rope_theta=" + exact_double_text(m.rope_theta) + " rope_scaling=" + r.type +
         " factor=" + optional_double(r.factor) + " low_freq_factor=" + optional_double(r.low_freq_factor) +
         " high_freq_factor=" + optional_double(r.high_freq_factor) + " original_max_position_embeddings=" +
         (r.original_max_position_embeddings ? std::to_string(*r.original_max_position_embeddings) : "-") +
         " hidden=" + std::to_string(m.hidden_size) + " intermediate=" + std::to_string(m.intermediate_size) +
         " vocab=" + std::to_string(m.vocab_size) +
         " max_position_embeddings=" + std::to_string(m.max_position_embeddings);
}

}  // namespace kvsim
