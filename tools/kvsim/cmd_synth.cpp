// `kvsim synth`: writes a synthetic attention trace (DESIGN.md §3) for one request.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "tools/kvsim/commands.h"
#include "traces/head_map.h"
#include "traces/layer_list.h"
#include "traces/model_presets.h"
#include "traces/synth.h"
#include "traces/trace_file.h"
#include "util/error.h"
#include "util/options_error.h"
#include "util/output_guard.h"
#include "util/presets.h"

namespace kvsim::cli {

namespace po = boost::program_options;

namespace {

constexpr const char* kHelp = R"(kvsim synth: write a synthetic attention trace (HDF5, format v1)

Every KV head follows one archetype, mixed per layer by depth: attention sinks, local/recency
heads, retrieval heads that attend to planted needle spans, heavy-hitter heads and diffuse heads.
Keys and queries are built so that softmax(Q.K/sqrt(d)) after RoPE has these patterns; query heads
of a GQA group share their KV head's K/V. The same options and seed give an identical file.

Queries are stored for the last --query-window prompt positions and every generated position
(plus, with --chunk-tokens and --window, the last W positions of every prefill chunk: what
chunked SnapKV scores with). With --recon-queries T, the trace holds a context-reconstruction pass
(what kvzip scores with; trace format 1.1): KVzip's 2000-token passes over the context
[4, n - question-tokens), each a 16-token repeat prompt then the chunk's copy, their keys
(recon_keys, recon_passes), and T of the copies' queries (recon_queries, recon_query_rows): query i
re-reads context position c0 + floor((2i+1)C/2T), with its archetype's behaviour as seen over the
whole prompt.

Head maps (--head-map FILE): which archetype each KV head follows, measured instead of the depth
mix. One line per layer, one cell per KV head (tabs or spaces; '#' lines are comments); a cell
is an archetype name (sink, local, retrieval, heavy_hitter, diffuse) or a gate value in [0, 1]
(DuoAttention's full_attention_heads.tsv is a valid map). Gate values become retrieval heads by
DuoAttention's rule (the top half: gate >= np.quantile(gates + 1e-6 noise, 0.5)), the rest
streaming heads, split into sink and local by the depth mix's ratio. Presets with a measured
map (configs/head_maps/<model>.tsv: llama-3.1-8b, mistral-7b-v0.3) use it by default;
--head-map none keeps the depth mix. The trace records the map in its gen_head_map attribute.

example:
  kvsim synth --model llama-3.1-8b --prompt-tokens 8192 --generated-tokens 64 \
              --layers 0,8,16,24 --needles 2 --float16 --gzip 4 --out traces/synth-8k.h5

)";

std::vector<std::int64_t> chunk_window_positions(std::int64_t prompt, std::int64_t chunk, std::int64_t window) {
  std::vector<std::int64_t> positions;
  for (std::int64_t begin = 0; begin < prompt; begin += chunk) {
    const std::int64_t end = std::min(prompt, begin + chunk);
    for (std::int64_t t = std::max(begin, end - window); t < end; ++t) positions.push_back(t);
  }
  return positions;
}

std::string mebibytes(std::uintmax_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return out.str();
}

}  // namespace

int cmd_synth(const Args& args) {
  std::string model = "llama-3.1-8b", layers = "all", out, head_map;
  SynthParams params;
  std::int64_t chunk_tokens = 0, window = 0;
  TraceWriteOptions write;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&model)->default_value(model), "model preset (configs/models/NAME.ini) or an .ini path")
      ("prompt-tokens", po::value(&params.prompt_tokens)->required(), "prompt length n (required)")
      ("generated-tokens", po::value(&params.generated_tokens)->default_value(0), "generated tokens m")
      ("layers", po::value(&layers)->default_value(layers), "traced layers: all, 0,8,16 or ranges like 0-3")
      ("seed", po::value(&params.seed)->default_value(1), "random seed")
      ("query-window", po::value(&params.query_window_tokens)->default_value(64),
       "stored queries at the end of the prompt")
      ("chunk-tokens", po::value(&chunk_tokens), "prefill chunk size C (with --window)")
      ("window", po::value(&window), "also store the last W queries of every chunk (with --chunk-tokens)")
      ("needles", po::value(&params.num_needles)->default_value(params.num_needles), "planted needle spans")
      ("needle-tokens", po::value(&params.needle_tokens)->default_value(params.needle_tokens), "tokens per needle")
      ("question-tokens", po::value(&params.question_tokens)->default_value(params.question_tokens),
       "prompt tokens at the end whose retrieval queries seek the needles")
      ("recon-queries", po::value(&params.recon_query_tokens)->default_value(0),
       "also store a context-reconstruction pass (KVzip) with this many of its queries, strided over "
       "the context (0: none; kvsim run synthesises 2048 for a kvzip policy)")
      ("head-map", po::value(&head_map),
       "per-head archetypes from this file, or none for the depth mix (default: the preset's measured map, if any)")
      ("float16", po::bool_switch(&write.float16), "store K/V/Q as float16 (default float32)")
      ("gzip", po::value(&write.gzip_level)->default_value(0), "gzip level 0-9 (0: none)")
      ("out", po::value(&out)->required(), "output file (.h5, required)");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).run(), vm);
    if (vm.count("help")) {
      std::cout << kHelp << options;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail_input("command line", options_error_text(e, args) + " (see kvsim synth --help)");
  }
  if (vm.count("chunk-tokens") != vm.count("window")) {
    fail_input("--chunk-tokens", "needs --window too, and --window needs --chunk-tokens");
  }
  if (vm.count("chunk-tokens") && (chunk_tokens < 1 || window < 1)) {
    fail_input("--chunk-tokens", "--chunk-tokens and --window must be positive");
  }
  if (params.recon_query_tokens < 0) {
    fail_input("--recon-queries", "must be >= 0, got " + std::to_string(params.recon_query_tokens));
  }
  if (write.gzip_level < 0 || write.gzip_level > 9) {
    fail_input("--gzip", "level must be in 0..9, got " + std::to_string(write.gzip_level));
  }

  params.model = load_model_preset(model);
  try {
    params.head_map = select_head_map(head_map, params.model);
  } catch (const InputError& e) {
    fail_input("--head-map", e.what());
  }
  std::vector<std::string> inputs = {
      resolve_preset(model, std::filesystem::path(config_dir()) / "models", "model preset", "a model .ini").string()};
  if (params.head_map) inputs.push_back(params.head_map->path);
  refuse_output_over_inputs(out, inputs, "--out");
  params.traced_layers = parse_layer_list(layers, params.model.num_layers, "--layers");
  if (chunk_tokens > 0) {
    params.extra_query_positions = chunk_window_positions(params.prompt_tokens, chunk_tokens, window);
  }
  validate_synth_params(params, "kvsim synth (--model " + model + ")");
  // A trace of a request the model cannot serve would be replayed as if it could (issue 18 §2).
  const std::int64_t context = params.model.max_position_embeddings;
  if (context > 0 && params.prompt_tokens + params.generated_tokens > context) {
    fail_input("--prompt-tokens", std::to_string(params.prompt_tokens) + " + --generated-tokens " +
                                      std::to_string(params.generated_tokens) + " exceed the context length of " +
                                      params.model.name + " (max_position_embeddings = " + std::to_string(context) +
                                      ")");
  }
  const auto source = make_synthetic_source(params);

  const std::size_t total = params.traced_layers.size();
  std::size_t done = 0;
  write_trace_file(out, *source, write, [&](const std::string&, int layer) {
    std::cerr << "synth: layer " << layer << " (" << ++done << "/" << total << ")\n";
  });
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(out, ec);
  std::cout << "wrote " << out << ": " << params.model.name << ", " << total << " layers, " << params.prompt_tokens
            << "+" << params.generated_tokens << " tokens, seed " << params.seed << ", rope scaling "
            << params.model.rope_scaling.text() << ", " << (ec ? std::string("size unknown") : mebibytes(bytes))
            << "\n";
  return 0;
}

}  // namespace kvsim::cli
