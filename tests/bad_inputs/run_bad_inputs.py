#!/usr/bin/env python3
"""Bad-input matrix for kvsim (issue 8, Reliability 1).

Every case feeds kvsim one malformed input and checks that kvsim refuses it cleanly:
  * exit status 2 (not a signal, not 3 "internal error", not 0);
  * exactly one line on stderr, containing the case's expected fragment and naming the bad file;
  * it finishes within --timeout seconds (a hang is a failure);
  * nothing is left behind: the case's sandbox folder holds exactly the files it held before the
    run (no --out folder contents, no summary.json, no --save-kept / synth --out / --dot /
    --timeline file, no *.tmp.* file).

Inputs:
  scenarios/*.ini  scenario files          kvsim run FILE --out out --save-kept kept.h5 --quiet
  hardware/*.ini   hardware preset files   kvsim hw show FILE --dot hw.dot
  models/*.ini     model files             kvsim synth --model FILE ... --out synth.h5
  head_maps/*.tsv  head map files          kvsim synth --model tiny-model.ini --head-map FILE ... --out synth.h5
  sweeps/*.ini     sweep files             kvsim sweep FILE --out out --quiet
  workloads/*      serving workloads       kvsim workload FILE
                   (Azure .csv, Mooncake .jsonl, synthetic specs)
  (generated)      HDF5 traces             each corrupted copy of a small valid `kvsim synth` file
                                           is run through `kvsim inspect` and `kvsim run`
                                           (RUN_ONLY: valid files that only a replay refuses)
  (inline)         command lines           unknown command/option, missing options, impossible synth
Each static file's first line says what is wrong and what is expected:
  # <problem> -- expect exit 2: "<fragment of the error line>"
and an optional second line `# args: ...` replaces the default command ({file} is the case file).
Files in support/ are copied next to every case (a valid tiny model, a valid scenario).

Workload files cannot start with a comment (a CSV's first line is its header, a JSONL line is
JSON), so in workloads/ those one or two header lines live in a sidecar `NAME.expect` instead, and
every case is one .expect file: workloads/missing_key.jsonl.expect describes missing_key.jsonl. An
.expect without a data file beside it is a command-line case, such as a bad synthetic spec given
by its `# args:` line (write the spec without spaces: args are split on whitespace).

Cases that expose a kvsim bug that is not fixed yet are listed in EXPECTED_FAILURES below: they
still run, are reported as XFAIL, and keep the test green; one that starts passing is reported as
XPASS and fails the test, so that the list is kept up to date.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time

# Trace cases that are valid files and only fail when replayed (inspect checks the stored data;
# a replay needs the attention and the queries its policies and fidelity use): no inspect case.
RUN_ONLY = {"logits_overflow", "decode_query_missing"}

# Known kvsim bugs found by this matrix: case name -> what goes wrong. Remove an entry when fixed.
EXPECTED_FAILURES = {
}
if os.environ.get("KVSIM_SANITIZED"):
    # libhdf5 1.10's H5HG_read memcpys out of bounds on a corrupt global-heap size. In a plain build
    # that faults and traces/hdf5_crash_guard.h turns it into the one-line error; under ASan the
    # memcpy interceptor reports the overlap inside libhdf5 first, before any signal.
    _HDF5_HEAP = "ASan reports libhdf5's own out-of-bounds memcpy (H5HG_read) before the fault kvsim's crash guard handles"
    EXPECTED_FAILURES.update({"trace.corrupt_global_heap.inspect": _HDF5_HEAP,
                              "trace.corrupt_global_heap.run": _HDF5_HEAP})

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data")  # valid workload samples for the controls
HEADER = re.compile(r'^#\s*(?P<problem>.*?)\s+--\s+expect exit (?P<code>\d+):\s+"(?P<fragment>.*)"\s*$')
ARGS = re.compile(r"^#\s*args:\s*(?P<args>.*)$")
MEMORY_LIMIT = 4 << 30  # address-space cap for kvsim: a runaway allocation fails instead of eating the machine

# The valid trace every corrupted trace starts from (tiny-model.ini: 3 layers, 8 query heads,
# 2 KV heads, head_dim 32), with the same shape as support/valid-scenario.ini.
PROMPT, GENERATED = 256, 8
SYNTH_ARGS = ["--prompt-tokens", str(PROMPT), "--generated-tokens", str(GENERATED), "--layers", "0,2",
              "--chunk-tokens", "128", "--window", "16", "--seed", "3"]


class Case:
    def __init__(self, name, argv, problem, fragment, names=(), inputs=(), code=2, setup=None):
        self.name = name            # unique, e.g. scenario.unknown_key_workload
        self.argv = argv            # kvsim arguments, run in the case's sandbox folder
        self.problem = problem      # what is wrong with the input
        self.fragment = fragment    # must appear in the single stderr line
        self.names = list(names)    # file names that must appear in the stderr line too
        self.inputs = list(inputs)  # (source path, name in sandbox) copied in before the run
        self.code = code            # expected exit status
        self.setup = setup          # optional callable(sandbox) creating generated inputs


# ---------------------------------------------------------------------------------------------
# Static cases (INI files in this folder)

DEFAULT_ARGS = {
    "scenarios": "run {file} --out out --save-kept kept.h5 --quiet",
    "hardware": "hw show {file} --dot hw.dot",
    "models": "synth --model {file} --prompt-tokens 256 --generated-tokens 4 --layers 0 --out synth.h5",
    "sweeps": "sweep {file} --out out --quiet",
    "head_maps": "synth --model tiny-model.ini --head-map {file} --prompt-tokens 256 --generated-tokens 4 --layers 0 --out synth.h5",
}


KIND = {"scenarios": "scenario", "hardware": "hardware", "models": "model", "sweeps": "sweep", "head_maps": "head_map"}
# Head maps are .tsv files ('#' lines are comments there too, so they carry the expectation header).
SUFFIX = {"head_maps": ".tsv"}


def static_cases(trace_setup):
    support = [(os.path.join(HERE, "support", n), n) for n in sorted(os.listdir(os.path.join(HERE, "support")))]
    cases = []
    for folder, default in DEFAULT_ARGS.items():
        for file in sorted(os.listdir(os.path.join(HERE, folder))):
            suffix = SUFFIX.get(folder, ".ini")
            if not file.endswith(suffix):
                continue
            path = os.path.join(HERE, folder, file)
            with open(path, encoding="utf-8-sig") as f:  # a case may start with a byte-order mark
                lines = f.read().splitlines()
            problem, fragment, code, args = read_expectation(path, lines)
            argv = (args or default).format(file=file).split()
            text = "\n".join(lines)
            uses_trace = "good.h5" in text
            cases.append(Case("%s.%s" % (KIND[folder], file[:-len(suffix)]), argv, problem, fragment,
                              names=[file], inputs=support + [(path, file)], code=code,
                              setup=trace_setup if uses_trace else None))
    return cases


def read_expectation(path, lines):
    """(problem, fragment, code, argv template or None) from a case's first one or two lines."""
    m = HEADER.match(lines[0]) if lines else None
    if not m:
        raise SystemExit("%s: first line must be '# <problem> -- expect exit N: \"<fragment>\"'" % path)
    a = ARGS.match(lines[1]) if len(lines) > 1 else None
    return m.group("problem"), m.group("fragment"), int(m.group("code")), a.group("args") if a else None


WORKLOAD_ARGS = "workload {file}"


def workload_cases():
    """One case per workloads/*.expect (see the docstring): the data file it names, if any, is
    copied into the sandbox and must be named by the error."""
    folder = os.path.join(HERE, "workloads")
    cases = []
    for expect in sorted(os.listdir(folder)):
        if not expect.endswith(".expect"):
            continue
        file = expect[:-len(".expect")]
        data = os.path.join(folder, file)
        with open(os.path.join(folder, expect)) as f:
            problem, fragment, code, args = read_expectation(os.path.join(folder, expect), f.read().splitlines())
        has_data = os.path.isfile(data)
        if not has_data and args is None:
            raise SystemExit("%s: no %s beside it, so it needs an '# args:' line" % (expect, file))
        argv = (args or WORKLOAD_ARGS).format(file=file).split()
        cases.append(Case("workload." + file, argv, problem, fragment, names=[file] if has_data else [],
                          inputs=[(data, file)] if has_data else [], code=code))
    for data in sorted(os.listdir(folder)):
        if not data.endswith(".expect") and not os.path.isfile(os.path.join(folder, data + ".expect")):
            raise SystemExit("workloads/%s has no %s.expect saying what is wrong with it" % (data, data))
    return cases


# ---------------------------------------------------------------------------------------------
# Generated cases: corrupted copies of a valid HDF5 trace

def trace_mutations(np, h5py):
    """name -> (problem, fragment, mutate(path)) where mutate edits a copy of the valid trace."""
    R = "requests/0"
    L0 = R + "/layer_0"

    def attrs(fn):
        def mutate(path):
            with h5py.File(path, "r+") as f:
                fn(f)
        return mutate

    def replace(dataset, make):
        def fn(f):
            old = f[dataset][()]
            del f[dataset]
            f.create_dataset(dataset, data=make(old))
        return attrs(fn)

    def poke(dataset, index, value):
        def fn(f):
            data = f[dataset][()]
            data[index] = value
            f[dataset][...] = data
        return attrs(fn)

    def truncate(fraction=None, cut=None):
        def mutate(path):
            size = os.path.getsize(path)
            keep = int(size * fraction) if fraction is not None else size - cut
            with open(path, "r+b") as f:
                f.truncate(keep)
        return mutate

    def overwrite(text):
        def mutate(path):
            with open(path, "wb") as f:
                f.write(text)
        return mutate

    def corrupt_chunk(path):
        # Scribble over the middle of the first stored chunk of layer_2/values (gzip-compressed
        # copy): the metadata is intact, the data cannot be decompressed.
        with h5py.File(path, "r") as f:
            info = f[R + "/layer_2/values"].id.get_chunk_info(0)
        with open(path, "r+b") as f:
            f.seek(info.byte_offset + info.size // 4)
            f.write(b"\xde\xad\xbe\xef" * max(1, info.size // 8))

    def corrupt_global_heap(path):
        # Variable-length string attributes live in HDF5's global heap ("GCOL" collection): make
        # the size field of its first object huge, as a bit flip or a hostile file would.
        with open(path, "r+b") as f:
            data = f.read()
            at = data.find(b"GCOL")
            assert at >= 0, "no global heap in the valid trace"
            f.seek(at + 24)  # signature 4, version 1, reserved 3, collection size 8, index 2, refs 2, reserved 4
            f.write(struct.pack("<Q", 0x7F0013FF7F0013FF))

    def huge_shape(f):
        # Consistent metadata declaring a 10^9-token request (keys/values 256 GB at float32),
        # stored sparse, so the file itself stays small.
        n = 1_000_000_000
        f[R].attrs["prompt_tokens"] = n - GENERATED
        for layer in ("layer_0", "layer_2"):
            for name in ("keys", "values"):
                del f[R + "/" + layer + "/" + name]
                f.create_dataset(R + "/" + layer + "/" + name, shape=(2, n, 32), dtype="f4", chunks=(1, 4096, 32),
                                 fillvalue=0.5)
            pos = f[R + "/" + layer + "/query_positions"][()]
            pos += n - (PROMPT + GENERATED)
            f[R + "/" + layer + "/query_positions"][...] = pos

    def set_attr(obj, key, value):
        return attrs(lambda f: f[obj].attrs.__setitem__(key, value) if obj != "/" else f.attrs.__setitem__(key, value))

    def del_attr(obj, key):
        return attrs(lambda f: f[obj].attrs.__delitem__(key))

    def delete(obj):
        return attrs(lambda f: f.__delitem__(obj))

    def empty_layer(f):
        for name in list(f[L0].keys()):
            del f[L0][name]

    def duplicate_position(f):
        d = f[L0 + "/query_positions"]
        data = d[()]
        data[1] = data[0]
        d[...] = data

    def empty_requests(f):
        del f["requests/0"]

    def set_attrs(**values):
        return attrs(lambda f: f.attrs.update(values))

    def no_queries(f):
        # A layer that stores no queries at all (T_q = 0): passed inspect before issue 17.
        for name, shape, dtype in (("queries", (8, 0, 32), "f4"), ("query_positions", (0,), "i8")):
            del f[L0 + "/" + name]
            f.create_dataset(L0 + "/" + name, shape=shape, dtype=dtype)

    def virtual_keys(f):
        # layer_0/keys as an HDF5 virtual dataset whose source file does not exist: HDF5 reads the
        # fill value (zeros) for it without a word.
        layout = h5py.VirtualLayout(shape=(2, PROMPT + GENERATED, 32), dtype="f4")
        layout[...] = h5py.VirtualSource("missing_source.h5", "keys", shape=(2, PROMPT + GENERATED, 32))
        del f[L0 + "/keys"]
        f.create_virtual_dataset(L0 + "/keys", layout, fillvalue=0)

    def scale(dataset, factor):
        def fn(f):
            d = f[dataset]
            d[...] = d[()] * factor
        return fn

    def overflowing_logits(f):
        # Finite float32 keys and queries (|x| ~ 1e21) whose dot products overflow float32.
        scale(L0 + "/keys", 1e20)(f)
        scale(L0 + "/queries", 1e20)(f)

    def recon_pass_data(f, keys=True, passes=([4, 100, 0, 10], [100, 200, 10, 20]), rows=(1, 2, 12, 19)):
        f.create_dataset(L0 + "/recon_queries", data=np.zeros((8, len(rows), 32), "f4"))
        f.create_dataset(L0 + "/recon_passes", data=np.asarray(passes, "i8"))
        f.create_dataset(L0 + "/recon_query_rows", data=np.asarray(rows, "i8"))
        if keys:
            f.create_dataset(L0 + "/recon_keys", data=np.zeros((2, 20, 32), "f4"))

    def drop_last_query(f):
        # The last decode position's query is missing in layer_0: the trace is valid on its own,
        # but the fidelity measurement needs it.
        for name in ("queries", "query_positions"):
            old = f[L0 + "/" + name][()]
            del f[L0 + "/" + name]
            f.create_dataset(L0 + "/" + name, data=old[:, :-1] if name == "queries" else old[:-1])

    return {
        # root attributes
        "missing_format": ("root attribute 'format' is missing", "format", del_attr("/", "format")),
        "wrong_format": ("root attribute format = 'something-else'", "format", set_attr("/", "format", "something-else")),
        "missing_version": ("root attribute 'version' is missing", "version", del_attr("/", "version")),
        "wrong_version": ("root attribute version = 2 (kvsim reads version 1)", "version", set_attr("/", "version", 2)),
        "version_is_string": ("root attribute version is a string ('1')", "version", set_attr("/", "version", "1")),
        "missing_num_kv_heads": ("root attribute 'num_kv_heads' is missing", "num_kv_heads", del_attr("/", "num_kv_heads")),
        "heads_not_dividing": ("root attribute num_kv_heads = 3 does not divide num_q_heads = 8", "num_kv_heads",
                               set_attr("/", "num_kv_heads", 3)),
        "zero_head_dim": ("root attribute head_dim = 0", "head_dim", set_attr("/", "head_dim", 0)),
        "wrong_source": ("root attribute source = 'guessed'", "source", set_attr("/", "source", "guessed")),
        "missing_traced_layers": ("root attribute 'traced_layers' is missing", "traced_layers",
                                  del_attr("/", "traced_layers")),
        # RoPE scaling (a compatible addition to version 1; absent means none)
        "rope_scaling_unknown_type": ("root attribute rope_scaling_type = 'dynamic' (kvsim models none, linear, llama3)",
                                      "rope_scaling_type", set_attrs(rope_scaling_type="dynamic", rope_scaling_factor=2.0)),
        "rope_scaling_zero_factor": ("linear rope scaling with rope_scaling_factor = 0", "rope_scaling_factor",
                                     set_attrs(rope_scaling_type="linear", rope_scaling_factor=0.0)),
        "rope_scaling_missing_parameter": ("llama3 rope scaling without rope_scaling_low_freq_factor",
                                           "rope_scaling_low_freq_factor",
                                           set_attrs(rope_scaling_type="llama3", rope_scaling_factor=8.0,
                                                     rope_scaling_high_freq_factor=4.0,
                                                     rope_scaling_original_max_position_embeddings=np.int64(8192))),
        "traced_layers_out_of_range": ("traced_layers = [0, 5] with num_layers = 3", "traced_layers",
                                       set_attr("/", "traced_layers", np.array([0, 5], dtype=np.int64))),
        "traced_layers_unsorted": ("traced_layers = [2, 0] is not ascending", "traced_layers",
                                   set_attr("/", "traced_layers", np.array([2, 0], dtype=np.int64))),
        "traced_layers_not_matching_groups": ("traced_layers = [0, 1, 2] but there is no layer_1 group", "layer_1",
                                              set_attr("/", "traced_layers", np.array([0, 1, 2], dtype=np.int64))),
        # request groups
        "no_requests_group": ("the /requests group is missing", "/requests", delete("requests")),
        "no_request": ("the /requests group is empty", "/requests", attrs(empty_requests)),
        "negative_prompt_tokens": ("request attribute prompt_tokens = -256", "prompt_tokens",
                                   set_attr(R, "prompt_tokens", -256)),
        "prompt_tokens_disagree_with_shapes": ("request attribute prompt_tokens = 300 but keys hold 264 tokens", "keys",
                                               set_attr(R, "prompt_tokens", 300)),
        # Found by the trace fuzzer: prompt + generated overflowed int64 before any check.
        "generated_tokens_int64_max": ("request attribute generated_tokens = 2^63 - 1", "generated_tokens",
                                       set_attr(R, "generated_tokens", np.int64(2**63 - 1))),
        "missing_generated_tokens": ("request attribute 'generated_tokens' is missing", "generated_tokens",
                                     del_attr(R, "generated_tokens")),
        "needle_span_out_of_range": ("request attribute needle_spans has a span past the end of the request",
                                     "needle_spans", set_attr(R, "needle_spans", np.array([[10, 20], [250, 999]], dtype=np.int64))),
        "missing_layer_group": ("group layer_2 listed in traced_layers is missing", "layer_2", delete(R + "/layer_2")),
        "empty_layer_group": ("group layer_0 exists but holds no datasets", "layer_0/keys", attrs(empty_layer)),
        "missing_queries": ("dataset layer_0/queries is missing", "layer_0/queries", delete(L0 + "/queries")),
        # shapes and types
        "keys_wrong_tokens": ("keys has 100 tokens instead of 264", "layer_0/keys", replace(L0 + "/keys", lambda a: a[:, :100, :])),
        "values_wrong_head_dim": ("values has head_dim 16 instead of 32", "layer_0/values",
                                  replace(L0 + "/values", lambda a: a[:, :, :16])),
        "queries_wrong_heads": ("queries has 4 query heads instead of 8", "layer_0/queries",
                                replace(L0 + "/queries", lambda a: a[:4])),
        "keys_2d": ("keys is 2-D", "layer_0/keys", replace(L0 + "/keys", lambda a: a[0])),
        "keys_integer": ("keys are stored as integers", "layer_0/keys", replace(L0 + "/keys", lambda a: a.astype(np.int32))),
        "query_positions_wrong_length": ("query_positions has one entry fewer than queries", "query_positions",
                                         replace(L0 + "/query_positions", lambda a: a[:-1])),
        "query_positions_float": ("query_positions are floats", "query_positions",
                                  replace(L0 + "/query_positions", lambda a: a.astype(np.float64))),
        # values
        "nan_in_keys": ("a NaN in layer_2/keys", "layer_2/keys", poke(R + "/layer_2/keys", (1, 200, 5), np.nan)),
        "inf_in_values": ("an Inf in layer_0/values", "layer_0/values", poke(L0 + "/values", (0, 3, 7), np.inf)),
        "neg_inf_in_queries": ("a -Inf in layer_2/queries", "layer_2/queries", poke(R + "/layer_2/queries", (7, -1, 31), -np.inf)),
        "nan_in_queries": ("a NaN in layer_0/queries", "layer_0/queries", poke(L0 + "/queries", (3, 0, 0), np.nan)),
        # positions
        "query_positions_unsorted": ("query_positions are not ascending", "query_positions",
                                     replace(L0 + "/query_positions", lambda a: a[::-1].copy())),
        "query_positions_duplicate": ("query_positions repeat a position", "query_positions",
                                      attrs(duplicate_position)),
        "query_positions_out_of_range": ("the last query position is 264 = n+m (past the end)", "query_positions",
                                         poke(L0 + "/query_positions", -1, PROMPT + GENERATED)),
        "query_positions_negative": ("the first query position is -1", "query_positions", poke(L0 + "/query_positions", 0, -1)),
        # the file itself
        "truncated_half": ("the file is cut in half", None, truncate(fraction=0.5)),
        "truncated_tail": ("the last 4 KiB of the file are cut off", None, truncate(cut=4096)),
        "truncated_header": ("only the first 100 bytes of the file remain", None, lambda path: os.truncate(path, 100)),
        "empty_file": ("the file is empty (0 bytes)", None, overwrite(b"")),
        "not_hdf5": ("a text file named .h5", "not an HDF5 file", overwrite(b"prompt,generated\n256,8\n")),
        "corrupt_chunk": ("compressed data of layer_2/values is overwritten with garbage", "layer_2/values", corrupt_chunk,
                          "gzip"),
        "corrupt_global_heap": ("the global-heap object holding the root string attributes has a huge size field",
                                None, corrupt_global_heap),
        "source_with_newline": ("root attribute source = 'synthetic\\nkvsim: all good' (a newline in a string the error echoes)",
                                "source", set_attr("/", "source", "synthetic\nkvsim: all good")),
        "nan_in_float16_keys": ("a NaN in layer_0/keys of a float16 trace", "layer_0/keys",
                                poke(L0 + "/keys", (1, 17, 3), np.nan), "float16"),
        "inf_in_float16_values": ("an Inf in layer_2/values of a float16 trace", "layer_2/values",
                                  poke(R + "/layer_2/values", (0, 263, 31), np.inf), "float16"),
        # issue 17: hostile but well-formed values
        "rope_theta_inf": ("root attribute rope_theta = inf", "rope_theta", set_attr("/", "rope_theta", np.inf)),
        "num_layers_int_max": ("root attribute num_layers = 2^31 - 1 (the engine's per-layer bookkeeping would exhaust "
                               "memory)", "num_layers", set_attr("/", "num_layers", np.int64(2**31 - 1))),
        "no_stored_queries": ("layer_0 stores zero queries (queries [8, 0, 32])", "layer_0/queries", attrs(no_queries)),
        "virtual_source_missing": ("layer_0/keys is a virtual dataset whose source file is missing", "layer_0/keys",
                                   attrs(virtual_keys)),
        "logits_overflow": ("keys and queries of layer_0 scaled by 1e20: finite, but q.k overflows float32 (the "
                            "metrics would be NaN)", "layer_0: KV head", attrs(overflowing_logits)),
        "decode_query_missing": ("layer_0 lacks the query of the last decode position, which the fidelity needs",
                                 "layer_0/query_positions has no query at position 263", attrs(drop_last_query)),
        "recon_queries_wrong_shape": ("optional dataset recon_queries has head_dim 16", "recon_queries",
                                      attrs(lambda f: f.create_dataset(L0 + "/recon_queries", data=np.zeros((8, 4, 16), "f4")))),
        # trace format 1.1: KVzip's reconstruction passes (recon_passes, recon_keys, recon_query_rows)
        "recon_passes_without_keys": ("recon_passes and recon_query_rows without recon_keys", "recon_keys: missing dataset",
                                      attrs(lambda f: recon_pass_data(f, keys=False))),
        "recon_passes_overlap": ("recon_passes whose second pass re-reads inside the first", "recon_passes: pass 1",
                                 attrs(lambda f: recon_pass_data(f, passes=[[4, 100, 0, 10], [50, 150, 10, 20]]))),
        "recon_query_rows_beyond_keys": ("recon_query_rows names row 20 of 20 recon_keys", "recon_query_rows: row 20",
                                         attrs(lambda f: recon_pass_data(f, rows=[1, 2, 3, 20]))),
        "version_minor_negative": ("root attribute version_minor = -1", "version_minor",
                                   set_attr("/", "version_minor", np.int64(-1))),
        "huge_declared_shape": ("consistent metadata declares a 10^9-token request (256 GB of keys per layer); must be "
                                "refused with a message naming the size, not crash or exhaust memory", "keys",
                                attrs(huge_shape)),
    }


def trace_cases(np, h5py, kvsim, workdir):
    good = os.path.join(workdir, "_traces", "good.h5")
    good_gz = os.path.join(workdir, "_traces", "good-gzip.h5")
    good_f16 = os.path.join(workdir, "_traces", "good-float16.h5")
    bases = {"plain": good, "gzip": good_gz, "float16": good_f16}
    model = os.path.join(HERE, "support", "tiny-model.ini")

    def make_good():
        if os.path.exists(good_f16):
            return
        os.makedirs(os.path.dirname(good), exist_ok=True)
        for out, extra in ((good, []), (good_gz, ["--gzip", "4"]), (good_f16, ["--float16"])):
            r = subprocess.run([kvsim, "synth", "--model", model, *SYNTH_ARGS, *extra, "--out", out],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise SystemExit("cannot make the valid trace: " + r.stderr)

    def copy_good(sandbox):
        make_good()
        shutil.copy(good, os.path.join(sandbox, "good.h5"))

    cases = []
    mutations = trace_mutations(np, h5py)
    for name, (problem, fragment, mutate, *base) in mutations.items():
        file = "bad_%s.h5" % name

        def setup(sandbox, mutate=mutate, file=file, base=bases[base[0] if base else "plain"]):
            make_good()
            path = os.path.join(sandbox, file)
            shutil.copy(base, path)
            mutate(path)
            with open(os.path.join(sandbox, "scenario.ini"), "w") as f:
                f.write("[workload]\ntrace = %s\n[policy]\nspec = snapkv(budget=0.25, window=16, prefill=chunk)\n"
                        "[sim]\nthreads = 1\n" % file)

        frag = fragment if fragment is not None else file
        if name not in RUN_ONLY:
            cases.append(Case("trace.%s.inspect" % name, ["inspect", file, "--quiet"], problem, frag, names=[file],
                              setup=setup))
        cases.append(Case("trace.%s.run" % name, ["run", "scenario.ini", "--out", "out", "--save-kept", "kept.h5",
                                                  "--quiet"], problem, frag, names=[file], setup=setup))
    return cases, copy_good


# ---------------------------------------------------------------------------------------------
# Command-line cases

def cli_cases(copy_good):
    model = [(os.path.join(HERE, "support", "tiny-model.ini"), "tiny-model.ini"),
             (os.path.join(HERE, "support", "valid-scenario.ini"), "valid-scenario.ini")]
    synth = ["synth", "--model", "tiny-model.ini", "--prompt-tokens", "256", "--layers", "0"]
    c = []

    def add(name, argv, problem, fragment, setup=None):
        c.append(Case("cli." + name, argv, problem, fragment, inputs=model, setup=setup))

    add("unknown_command", ["frobnicate"], "unknown command", "unknown command 'frobnicate'")
    add("run_unknown_option", ["run", "valid-scenario.ini", "--out", "out", "--bogus"], "unknown option --bogus", "bogus")
    add("run_missing_out", ["run", "valid-scenario.ini"], "run without --out", "--out")
    add("run_missing_scenario", ["run", "--out", "out"], "run without a scenario", "SCENARIO")
    add("run_missing_scenario_file", ["run", "absent.ini", "--out", "out"], "the scenario file does not exist", "absent.ini")
    add("run_scenario_is_directory", ["run", ".", "--out", "out"], "the scenario is a directory", "is a folder")
    add("run_negative_threads", ["run", "valid-scenario.ini", "--out", "out", "--threads", "-2"], "--threads -2", "threads")
    add("run_threads_not_a_number", ["run", "valid-scenario.ini", "--out", "out", "--threads", "many"],
        "--threads many", "threads")
    # Boost 1.74's error text substitutes its own placeholders until none is left: a value that is one looped forever.
    add("run_threads_placeholder", ["run", "valid-scenario.ini", "--out", "out", "--threads", "%value%"],
        "--threads %value% (a Boost message placeholder)", "threads")
    add("synth_prompt_placeholder", ["synth", "--model", "tiny-model.ini", "--prompt-tokens", "%canonical_option%",
                                     "--out", "synth.h5"], "--prompt-tokens %canonical_option%", "prompt-tokens")
    add("run_two_scenarios", ["run", "valid-scenario.ini", "valid-scenario.ini", "--out", "out"],
        "two positional scenarios", "kvsim run")
    add("synth_missing_out", synth, "synth without --out", "out")
    add("synth_missing_prompt_tokens", ["synth", "--model", "tiny-model.ini", "--out", "synth.h5"],
        "synth without --prompt-tokens", "prompt-tokens")
    add("synth_unknown_option", synth + ["--out", "synth.h5", "--needels", "2"], "synth --needels (typo)", "needels")
    add("synth_impossible_needles", synth + ["--needles", "40", "--needle-tokens", "64", "--out", "synth.h5"],
        "40 needles of 64 tokens cannot fit in a 256-token prompt", "num_needles")
    add("synth_negative_needles", synth + ["--needles", "-1", "--out", "synth.h5"], "--needles -1", "needles")
    add("synth_zero_needle_tokens", synth + ["--needles", "2", "--needle-tokens", "0", "--out", "synth.h5"],
        "--needle-tokens 0", "needle_tokens")
    add("synth_negative_generated", synth + ["--generated-tokens", "-3", "--out", "synth.h5"],
        "--generated-tokens -3", "generated_tokens")
    add("synth_zero_prompt", ["synth", "--model", "tiny-model.ini", "--prompt-tokens", "0", "--out", "synth.h5"],
        "--prompt-tokens 0", "prompt_tokens")
    add("synth_prompt_not_a_number", ["synth", "--model", "tiny-model.ini", "--prompt-tokens", "1e3x", "--out", "synth.h5"],
        "--prompt-tokens 1e3x", "prompt-tokens")
    add("synth_chunk_without_window", synth + ["--chunk-tokens", "64", "--out", "synth.h5"],
        "--chunk-tokens without --window", "--window")
    add("synth_bad_gzip", synth + ["--gzip", "12", "--out", "synth.h5"], "--gzip 12", "gzip")
    add("synth_layer_out_of_range", synth[:-2] + ["--layers", "0,7", "--out", "synth.h5"], "--layers 0,7 of 3 layers", "layers")
    add("synth_unknown_model", ["synth", "--model", "llama-9b", "--prompt-tokens", "256", "--out", "synth.h5"],
        "--model names an unknown preset", "unknown model preset 'llama-9b'")
    add("synth_out_in_missing_folder", synth + ["--out", "no/such/folder/synth.h5"], "--out in a folder that does not exist",
        "no/such/folder")
    add("synth_negative_query_window", synth + ["--query-window", "-5", "--out", "synth.h5"], "--query-window -5",
        "query_window")
    add("inspect_missing_file", ["inspect", "absent.h5"], "inspect a file that does not exist", "absent.h5")
    add("inspect_no_file", ["inspect"], "inspect without a file", "inspect")
    add("hw_unknown_preset", ["hw", "show", "h1000"], "hw show with an unknown preset", "unknown hardware preset 'h1000'")
    add("hw_unknown_action", ["hw", "explode"], "hw with an unknown action", "unknown action 'explode'")
    add("hw_unknown_attach", ["hw", "show", "h100-sxm", "--attach", "cxl-gen9"], "hw show --attach unknown",
        "unknown hardware attachment 'cxl-gen9'")
    add("policies_unknown_option", ["policies", "--frobnicate"], "policies --frobnicate", "frobnicate")
    add("workload_no_file", ["workload"], "kvsim workload without a file or spec", "FILE_OR_SPEC")
    add("workload_negative_max_requests", ["workload", "poisson(rate=5,requests=10)", "--max-requests=-1"],
        "--max-requests -1", "--max-requests: expected a whole number >= 0")
    add("workload_bad_seed", ["workload", "poisson(rate=5,requests=10)", "--seed", "-3"], "--seed -3",
        "--seed: expected a whole number >= 0, got '-3'")
    add("workload_folder", ["workload", "folder.csv"], "the workload path is a folder", "folder.csv: is a folder",
        setup=lambda sandbox: os.makedirs(os.path.join(sandbox, "folder.csv")))
    def hw_scenario(sandbox):
        with open(os.path.join(sandbox, "valid-scenario.ini")) as f:
            text = f.read()
        with open(os.path.join(sandbox, "hw-scenario.ini"), "w") as f:
            f.write(text + "[hardware]\npreset = h100-sxm\n")

    add("no_command", [], "kvsim without a command", "command")
    add("hw_no_action", ["hw"], "kvsim hw without show or list", "hw")
    add("hw_show_missing_preset", ["hw", "show"], "kvsim hw show without a preset", "PRESET")
    add("run_save_kept_in_missing_folder", ["run", "valid-scenario.ini", "--out", "out", "--save-kept", "no/such/kept.h5",
                                            "--quiet"], "--save-kept in a folder that does not exist", "no/such/kept.h5")
    add("synth_over_context_length", ["synth", "--model", "llama-3.1-8b", "--prompt-tokens", "131072",
                                      "--generated-tokens", "64", "--layers", "0", "--out", "t.h5"],
        "a synthetic request longer than the model's context (131072 + 64 > 131072)", "exceed the context length")
    add("run_timeline_in_missing_folder", ["run", "hw-scenario.ini", "--out", "out", "--timeline", "no/such/trace.json",
                                           "--quiet"], "--timeline in a folder that does not exist", "no/such/trace.json",
        setup=hw_scenario)
    # issue 17: bounds on counts, and the global option given twice
    def one_scenario_sweep(sandbox):
        shutil.copy(os.path.join(sandbox, "valid-scenario.ini"), os.path.join(sandbox, "sweep.ini"))

    add("sweep_jobs_huge", ["sweep", "sweep.ini", "--out", "out", "--jobs", "10000000", "--quiet"],
        "--jobs 10000000 (crashed inside TBB and left sweep.id behind)", "--jobs: must be in [1, 1024]",
        setup=one_scenario_sweep)
    add("run_threads_huge", ["run", "valid-scenario.ini", "--out", "out", "--threads", "100000000", "--quiet"],
        "--threads 100000000", "--threads: must be in [0, 1024]")
    add("run_threads_stacks_over_max_memory", ["--max-memory", "256MiB", "run", "valid-scenario.ini", "--out", "out",
                                               "--threads", "1000", "--quiet"],
        "--threads 1000 under --max-memory 256MiB (4 MiB of stack each)", "threads' stacks")
    add("max_memory_twice", ["--max-memory", "1GiB", "run", "valid-scenario.ini", "--out", "out", "--max-memory", "2GiB"],
        "--max-memory given twice", "--max-memory: given twice")
    add("max_memory_without_size", ["run", "valid-scenario.ini", "--out", "out", "--max-memory"],
        "--max-memory as the last word, without a size", "--max-memory: missing its SIZE")
    add("run_out_is_a_file", ["run", "valid-scenario.ini", "--out", "tiny-model.ini", "--quiet"],
        "--out names an existing regular file", "tiny-model.ini")

    # kvsim plan's deployment lists (issue 21): one line naming the option, before any simulation.
    def serve_scenario(sandbox, slo="[serving]\nslo = ttft=2s, tpot=100ms\n"):
        with open(os.path.join(sandbox, "serve.ini"), "w") as f:
            f.write("[model]\npreset = tiny-model.ini\n[workload]\n"
                    "arrivals = poisson(rate=5, requests=10, prompt_mean=100, output_mean=10)\n"
                    "[hardware]\npreset = h100-sxm\n" + slo + "[sim]\nthreads = 1\n")

    plan = ["plan", "serve.ini", "--quiet"]
    add("plan_tp_zero", plan + ["--tp", "0"], "--tp 0", "kvsim plan --tp: expected whole numbers >= 1", setup=serve_scenario)
    add("plan_tp_negative", plan + ["--tp=2,-4"], "--tp 2,-4", "got '-4'",
        setup=serve_scenario)
    add("plan_tp_empty_item", plan + ["--tp", "2,,4"], "--tp 2,,4 (a doubled comma)", "kvsim plan --tp: empty item",
        setup=serve_scenario)
    add("plan_tp_not_a_number", plan + ["--tp", "2,four"], "--tp 2,four", "got 'four'", setup=serve_scenario)
    add("plan_tp_fraction", plan + ["--tp", "1.5"], "--tp 1.5", "kvsim plan --tp: expected whole numbers", setup=serve_scenario)
    add("plan_tp_twice", plan + ["--tp", "2,2"], "--tp 2,2", "kvsim plan --tp: '2' is listed twice", setup=serve_scenario)
    add("plan_tp_not_dividing_heads", plan + ["--tp", "2,3"], "--tp 3 does not divide the tiny model's 8 query heads",
        "kvsim plan --tp 3", setup=serve_scenario)
    add("plan_batch_tokens_zero", plan + ["--max-batch-tokens", "512,0"], "--max-batch-tokens 512,0",
        "kvsim plan --max-batch-tokens: expected whole numbers >= 1 separated by commas, got '0'", setup=serve_scenario)
    add("plan_batch_tokens_trailing_comma", plan + ["--max-batch-tokens", "512,"], "--max-batch-tokens 512,",
        "kvsim plan --max-batch-tokens: empty item", setup=serve_scenario)
    add("plan_chunk_tokens_negative", plan + ["--chunk-tokens=-512"], "--chunk-tokens -512",
        "kvsim plan --chunk-tokens: expected whole numbers >= 1", setup=serve_scenario)
    add("plan_hardware_unknown", plan + ["--hardware", "h100-sxm,h1000"], "--hardware names an unknown preset",
        "kvsim plan --hardware h1000", setup=serve_scenario)
    add("plan_hardware_empty_item", plan + ["--hardware", "h100-sxm,,a100-80g"], "--hardware with a doubled comma",
        "kvsim plan --hardware: empty item", setup=serve_scenario)
    add("plan_without_slo", plan, "no --slo and no [serving] slo in the scenario", "kvsim plan --slo: missing",
        setup=lambda sandbox: serve_scenario(sandbox, slo=""))

    # Outputs naming an input (issue 17 item 2): refused before any work, the input untouched.
    def file_scenario(sandbox):
        copy_good(sandbox)
        with open(os.path.join(sandbox, "valid-scenario.ini")) as f:
            text = f.read().replace("trace = synthetic", "trace = good.h5")
        with open(os.path.join(sandbox, "file-scenario.ini"), "w") as f:
            f.write(text)

    def hard_link(sandbox):
        file_scenario(sandbox)
        os.link(os.path.join(sandbox, "good.h5"), os.path.join(sandbox, "link.h5"))

    def symlink(sandbox):
        file_scenario(sandbox)
        os.symlink("good.h5", os.path.join(sandbox, "alias.h5"))

    def scenario_in_folder(sandbox):
        os.makedirs(os.path.join(sandbox, "sub"))
        shutil.copy(os.path.join(sandbox, "valid-scenario.ini"), os.path.join(sandbox, "sub", "s.ini"))
        shutil.copy(os.path.join(sandbox, "tiny-model.ini"), os.path.join(sandbox, "sub", "tiny-model.ini"))

    def sweep_reading_results(sandbox):
        file_scenario(sandbox)
        os.makedirs(os.path.join(sandbox, "out"))
        os.link(os.path.join(sandbox, "good.h5"), os.path.join(sandbox, "out", "results.h5"))
        with open(os.path.join(sandbox, "file-scenario.ini")) as f:
            text = f.read().replace("trace = good.h5", "trace = out/results.h5")
        with open(os.path.join(sandbox, "sweep.ini"), "w") as f:
            f.write(text.replace("chunk_tokens = 128", "chunk_tokens = 64, 128"))

    add("run_save_kept_over_trace", ["run", "file-scenario.ini", "--out", "out", "--save-kept", "good.h5", "--quiet"],
        "--save-kept names the trace the scenario reads", "--save-kept names the same file as", setup=file_scenario)
    add("run_save_kept_hard_link_to_trace", ["run", "file-scenario.ini", "--out", "out", "--save-kept", "link.h5",
                                             "--quiet"],
        "--save-kept is a hard link to the trace", "link.h5: --save-kept names the same file as", setup=hard_link)
    add("run_save_kept_symlink_to_trace", ["run", "file-scenario.ini", "--out", "out", "--save-kept", "alias.h5",
                                           "--quiet"],
        "--save-kept is a symbolic link to the trace", "alias.h5: --save-kept names the same file as", setup=symlink)
    add("run_save_kept_over_scenario", ["run", "valid-scenario.ini", "--out", "out", "--save-kept", "valid-scenario.ini",
                                        "--quiet"], "--save-kept names the scenario file", "valid-scenario.ini")
    add("run_save_kept_over_model", ["run", "valid-scenario.ini", "--out", "out", "--save-kept", "./tiny-model.ini",
                                     "--quiet"], "--save-kept names the model preset file", "tiny-model.ini")
    add("run_timeline_over_scenario", ["run", "hw-scenario.ini", "--out", "out", "--timeline", "hw-scenario.ini",
                                       "--quiet"], "--timeline names the scenario file", "--timeline names the same file",
        setup=hw_scenario)
    add("run_out_holds_scenario", ["run", "sub/s.ini", "--out", "sub", "--quiet"],
        "--out is the folder holding the scenario (it is replaced whole)", "--out holds", setup=scenario_in_folder)
    add("run_out_is_dot", ["run", "valid-scenario.ini", "--out", ".", "--quiet"],
        "--out . (the current folder, holding the scenario, would be replaced)", "--out holds valid-scenario.ini")
    add("run_out_holds_other_files", ["run", "valid-scenario.ini", "--out", "sub", "--quiet"],
        "--out holds files kvsim run does not write", "holds 's.ini'", setup=scenario_in_folder)
    add("synth_out_over_model", synth + ["--out", "tiny-model.ini"], "synth --out names its --model file",
        "tiny-model.ini: --out names the same file as")
    add("sweep_out_results_is_trace", ["sweep", "sweep.ini", "--out", "out", "--quiet"],
        "the sweep's trace is a hard link at out/results.h5, which the sweep writes", "results.h5: --out names the same file",
        setup=sweep_reading_results)
    return c


# ---------------------------------------------------------------------------------------------
# Running and checking one case

def snapshot(folder):
    found = set()
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            found.add(os.path.relpath(os.path.join(root, n), folder))
    return found


def limit_memory():
    os.setsid()
    # AddressSanitizer reserves terabytes of address space for its shadow memory: no cap there.
    if not os.environ.get("KVSIM_SANITIZED"):
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_case(case, kvsim, workdir, timeout):
    """Returns a list of problems (empty: the case passed)."""
    sandbox = os.path.join(workdir, case.name)
    shutil.rmtree(sandbox, ignore_errors=True)
    os.makedirs(sandbox)
    for src, name in case.inputs:
        shutil.copy(src, os.path.join(sandbox, name))
    if case.setup:
        try:
            case.setup(sandbox)
        except Exception as e:  # e.g. the valid trace's layout changed so a corruption no longer applies
            return ["could not build the bad input: %s: %s" % (type(e).__name__, e)], None
    before = snapshot(sandbox)
    proc = subprocess.Popen([kvsim, *case.argv], cwd=sandbox, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limit_memory)
    start = time.monotonic()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return ["hang: still running after %d s" % timeout], None
    elapsed = time.monotonic() - start
    stderr = err.decode("utf-8", "replace")
    lines = [l for l in stderr.splitlines() if l.strip()]
    problems = []
    rc = proc.returncode
    if rc < 0:
        problems.append("crash: killed by signal %s" % signal.Signals(-rc).name)
    elif rc == 3:
        problems.append("internal error (exit 3) instead of an input error")
    elif rc != case.code:
        problems.append("exit %d, expected %d" % (rc, case.code))
    if len(lines) != 1:
        problems.append("%d lines on stderr, expected exactly 1" % len(lines))
    text = " ".join(lines)
    if case.fragment not in text:
        problems.append("error does not contain %r" % case.fragment)
    for n in case.names:
        if n not in text:
            problems.append("error does not name the file %r" % n)
    left = sorted(snapshot(sandbox) - before)
    if left:
        problems.append("left output behind: %s" % ", ".join(left))
    return problems, (rc, stderr, elapsed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvsim", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=60, help="seconds before a case counts as a hang")
    ap.add_argument("--filter", default="", help="run only cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's stderr")
    args = ap.parse_args()
    kvsim = os.path.abspath(args.kvsim)
    workdir = os.path.abspath(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    os.environ.setdefault("KVSIM_CONFIG_DIR", os.path.join(os.path.dirname(os.path.dirname(HERE)), "configs"))
    import numpy as np
    import h5py

    generated, copy_good = trace_cases(np, h5py, kvsim, workdir)
    cases = static_cases(copy_good) + workload_cases() + generated + cli_cases(copy_good)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    unknown = set(EXPECTED_FAILURES) - set(names)
    if unknown:
        raise SystemExit("EXPECTED_FAILURES names unknown cases: %s" % ", ".join(sorted(unknown)))

    # Controls: the valid inputs the cases are built from must be accepted, or the matrix proves nothing.
    support = [(os.path.join(HERE, "support", n), n) for n in ("tiny-model.ini", "valid-scenario.ini")]
    controls = []
    for name, argv in (("synthetic", ["run", "valid-scenario.ini", "--out", "out", "--quiet"]),
                       ("trace_file", ["run", "file-scenario.ini", "--out", "out", "--quiet"]),
                       ("inspect", ["inspect", "good.h5", "--quiet"]),
                       ("hw_show", ["hw", "show", "h100-sxm", "--attach", "host-ddr5"]),
                       ("workload_azure", ["workload", os.path.join(DATA, "azure_conv_sample.csv")]),
                       ("workload_mooncake", ["workload", os.path.join(DATA, "mooncake_conversation_sample.jsonl")]),
                       ("workload_synthetic", ["workload", "gamma(rate=5,cv=3,requests=100)"])):
        def setup(sandbox):
            copy_good(sandbox)
            with open(os.path.join(sandbox, "valid-scenario.ini")) as f:
                text = f.read().replace("trace = synthetic", "trace = good.h5")
            with open(os.path.join(sandbox, "file-scenario.ini"), "w") as f:
                f.write(text)
        c = Case("control." + name, argv, "valid input", "", inputs=support, code=0, setup=setup)
        sandbox = os.path.join(workdir, c.name)
        shutil.rmtree(sandbox, ignore_errors=True)
        os.makedirs(sandbox)
        for src, n in c.inputs:
            shutil.copy(src, os.path.join(sandbox, n))
        setup(sandbox)
        r = subprocess.run([kvsim, *argv], cwd=sandbox, capture_output=True, text=True, timeout=300)
        controls.append((c.name, r))

    passed = failed = xfail = xpass = 0
    for name, r in controls:
        if r.returncode == 0:
            passed += 1
        else:
            failed += 1
            print("FAIL %s: valid input rejected (exit %d): %s" % (name, r.returncode, r.stderr.strip()))

    selected = [c for c in cases if args.filter in c.name]
    for case in selected:
        problems, info = run_case(case, kvsim, workdir, args.timeout)
        expected_bug = EXPECTED_FAILURES.get(case.name)
        detail = ""
        if info is not None:
            rc, stderr, elapsed = info
            detail = " [exit %d, %.1f s] %s" % (rc, elapsed, stderr.strip().replace("\n", " \\n ")[:600])
        if not problems:
            if expected_bug:
                xpass += 1
                failed += 1
                print("XPASS %s: listed in EXPECTED_FAILURES but passes now; remove it from the list" % case.name)
            else:
                passed += 1
                if args.verbose:
                    print("ok   %s%s" % (case.name, detail))
        elif expected_bug:
            xfail += 1
            passed += 1
            print("XFAIL %s: %s (known bug: %s)" % (case.name, "; ".join(problems), expected_bug))
        else:
            failed += 1
            print("FAIL %s (%s): %s%s" % (case.name, case.problem, "; ".join(problems), detail))

    print("%d cases (%d static files, %d generated traces x inspect and run, %d command lines) + %d controls"
          % (len(selected), sum(c.name.split(".")[0] in ("scenario", "hardware", "model", "workload", "sweep", "head_map") for c in selected),
             len({c.name.split(".")[1] for c in selected if c.name.startswith("trace.")}),
             sum(c.name.startswith("cli.") for c in selected),
             len(controls)))
    print("%d passed, %d failed (%d expected failures of known bugs, %d unexpected passes)"
          % (passed, failed, xfail, xpass))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
