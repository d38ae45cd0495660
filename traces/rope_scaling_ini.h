#pragma once
// The rope scaling keys of a model .ini file and of a scenario's [model] section:
//   rope_scaling_type = none | linear | llama3 | yarn
//   rope_scaling_factor, rope_scaling_low_freq_factor, rope_scaling_high_freq_factor,
//   rope_scaling_original_max_position_embeddings
// (the `rope_scaling` object of a Hugging Face config.json; ModelShape::validate checks them).
#include <boost/program_options.hpp>
#include <string>

#include "traces/model_shape.h"

namespace kvsim {

// Declares "<section>.rope_scaling_*" in `options`.
void add_rope_scaling_options(boost::program_options::options_description& options, const std::string& section);

// True when `values` holds any of those keys.
bool has_rope_scaling_keys(const boost::program_options::variables_map& values, const std::string& section);

// Applies the keys present in `values` to `scaling`: a given type starts from no parameters (a
// scenario that changes a preset's type does not inherit the preset's parameters), a given
// parameter replaces the one before.
void read_rope_scaling(const boost::program_options::variables_map& values, const std::string& section,
                       RopeScaling& scaling);

}  // namespace kvsim
