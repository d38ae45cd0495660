#!/usr/bin/env python3
"""Trains kvsim's tiny Llama-architecture model on CPU (a few minutes) so that it learns copying.

A small decoder-only transformer (tools/record/llama_tiny.py: RMSNorm, RoPE, GQA, SwiGLU; by default
3 layers, hidden 96, 4 query heads sharing 2 KV heads, head_dim 24), byte tokenizer (vocab 256;
--vocab V > 256 adds the V - 256 most frequent words), trained on the King James Bible (public
domain; tools/record/corpus.py) with next-byte cross-entropy. Most training sequences carry a
repeated passage (a span copied to a later place; 20% of them random letters, which only copying
predicts), which rewards induction heads: attend to the token after the previous occurrence of the
current context and copy it. The default curriculum (--stages) is the first of the two runs that
made tests/data/recorded_tiny.h5 (tests/data/recorded_tiny.md has both commands and their times;
the second, --init, continues at 1024 and 2048 tokens so the induction head reaches far back).

Deterministic given --seed, the thread count and the BLAS library: torch.manual_seed, a numpy
Generator for the data, torch.use_deterministic_algorithms(True), fixed torch.set_num_threads.

Writes DIR/config.json + DIR/pytorch_model.bin (Hugging Face Llama names; loads with
LlamaForCausalLM.from_pretrained in llama_tiny.py or in transformers) and DIR/train_log.json.

Speed: torch's matrix products go through the system BLAS. Debian's default libblas3 is the
reference implementation (~2.5 GFLOP/s); with libopenblas0-pthread installed (it registers itself
as libblas.so.3) training is several times faster; train_log.json records which one was loaded.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus  # noqa: E402

# The first run of tests/data/recorded_tiny.h5's recipe: 1500 steps of 16 x 128-token sequences that
# are one passage repeated with short gaps (induction forms here), then 400 steps of 8 x 512 tokens,
# 70% repeated passages, so that copying works at distances of a few hundred tokens.
DEFAULT_STAGES = "128:16:1500:1.0,512:8:400:0.7"

np = torch = F = LlamaConfig = LlamaForCausalLM = tokenizers = None  # imported by main() after the thread count


def import_torch(threads):
    """Imports numpy/torch after setting OPENBLAS_NUM_THREADS (read when the BLAS loads)."""
    global np, torch, F, LlamaConfig, LlamaForCausalLM, tokenizers
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    try:
        import numpy as np
        import torch
        from torch.nn import functional as F
    except ImportError as e:
        sys.exit("train_tiny.py: %s (install python3-torch and python3-numpy; tools/bootstrap.sh does)" % e)
    from llama_tiny import LlamaConfig, LlamaForCausalLM
    import llama_tiny as tokenizers


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--text", help="training text file (default: the KJV via the `bible` program)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init", metavar="DIR", help="continue from this checkpoint (its shape and tokenizer) instead of "
                    "a fresh model; the optimizer starts afresh")
    ap.add_argument("--stages", default=DEFAULT_STAGES,
                    help="curriculum SEQ_LEN:BATCH:STEPS:MULTI[,...] (MULTI = --multi-repeat-prob of that stage); "
                         "'' : one stage from --seq-len, --batch, --steps, --multi-repeat-prob (default %(default)s)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512, help="training context (tokens)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: deterministic and no BLAS spinning)")
    ap.add_argument("--repeat-prob", type=float, default=0.7, help="fraction of sequences with a repeated passage")
    ap.add_argument("--repeat-min", type=int, default=16, help="shortest repeated passage (tokens)")
    ap.add_argument("--repeat-max-frac", type=float, default=0.4, help="longest repeated passage / seq-len")
    ap.add_argument("--multi-repeat-prob", type=float, default=0.0,
                    help="fraction of sequences that are one passage repeated many times (with short gaps)")
    ap.add_argument("--random-span-prob", type=float, default=0.2,
                    help="fraction of repeated passages made of random letters (pure copying task)")
    ap.add_argument("--vocab", type=int, default=256,
                    help="tokens: 256 bytes + the (vocab - 256) most frequent words of the text (256: bytes only)")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=0, help="default hidden / heads (24)")
    ap.add_argument("--intermediate", type=int, default=256)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--init-std", type=float, default=0.0,
                    help="std of the normal init of linear/embedding weights (0: hidden^-0.5; transformers uses 0.02, "
                         "which at this width leaves attention uniform and learning stuck on a plateau)")
    ap.add_argument("--log-every", type=int, default=25)
    return ap.parse_args(argv)


class Batches:
    """Random windows of the training bytes; with probability repeat_prob a span [s, s+L) of the
    window is copied over [r, r+L), r >= s+L. Returns (tokens [B, T+1], copy mask [B, T]: targets
    inside a copied span, after its first token)."""

    def __init__(self, data, args, rng, vocab_size):
        self.data, self.args, self.rng = data, args, rng
        # Random spans draw whole words when there are any (bytes recur too often to copy by).
        self.random_low = 256 if vocab_size > 256 else 32
        self.random_high = vocab_size if vocab_size > 256 else 127

    def next(self, T, batch, multi_repeat_prob):
        a = self.args
        x = np.empty((batch, T + 1), dtype=np.int64)
        copy = np.zeros((batch, T), dtype=bool)
        lmax = max(a.repeat_min, int(a.repeat_max_frac * T))
        for b in range(batch):
            start = int(self.rng.integers(0, len(self.data) - T - 1))
            seq = self.data[start:start + T + 1].astype(np.int64)
            if self.rng.random() < multi_repeat_prob:
                seq, copy[b] = self.repeated_sequence(T)
            elif self.rng.random() < a.repeat_prob:
                length = int(self.rng.integers(a.repeat_min, lmax + 1))
                s = int(self.rng.integers(0, T + 1 - 2 * length + 1))
                r = int(self.rng.integers(s + length, T + 1 - length + 1))
                if self.rng.random() < a.random_span_prob:
                    # Random tokens have no n-gram statistics: only copying predicts the repeat.
                    seq[s:s + length] = self.rng.integers(self.random_low, self.random_high, size=length)
                seq[r:r + length] = seq[s:s + length]
                copy[b, r:r + length - 1] = True  # targets r+1 .. r+length-1 are predictable by copying
            x[b] = seq
        return torch.from_numpy(x), torch.from_numpy(copy)

    def repeated_sequence(self, T):
        """One passage P (repeat_min .. T/4 tokens) occurring again and again, each occurrence after
        a short stretch of other text (0 .. |P|/2 tokens): most targets are predictable by copying."""
        a = self.args
        length = int(self.rng.integers(a.repeat_min, max(a.repeat_min, T // 4) + 1))
        p_start = int(self.rng.integers(0, len(self.data) - length))
        passage = self.data[p_start:p_start + length].astype(np.int64)
        if self.rng.random() < a.random_span_prob:
            passage = self.rng.integers(self.random_low, self.random_high, size=length)
        parts, copy, first = [], [], True
        while sum(len(p) for p in parts) < T + 1:
            gap = int(self.rng.integers(0, length // 2 + 1))
            g_start = int(self.rng.integers(0, len(self.data) - gap))
            parts.append(self.data[g_start:g_start + gap].astype(np.int64))
            copy.append(np.zeros(gap, dtype=bool))
            parts.append(passage)
            mask = np.zeros(length, dtype=bool)
            if not first:
                mask[1:] = True  # the target at index i predicts token i+1 of the sequence
            copy.append(mask)
            first = False
        seq = np.concatenate(parts)[:T + 1]
        # copy mask over targets: target i (token i+1) is a copy when token i+1 lies in a repeat.
        tok_copy = np.concatenate(copy)[:T + 1]
        return seq, tok_copy[1:T + 1]


def init_weights(model, std=0.02):
    """As transformers' LlamaPreTrainedModel: normal(0, initializer_range) for linear/embedding."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, 0.0, std)


def new_model(args, vocab, max_len):
    init_std = args.init_std or args.hidden ** -0.5
    config = LlamaConfig(hidden_size=args.hidden, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                         head_dim=args.head_dim or args.hidden // args.heads, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, rope_theta=args.rope_theta, vocab_size=vocab,
                         rms_norm_eps=1e-5, max_position_embeddings=4 * max_len, initializer_range=init_std,
                         torch_dtype="float32")
    model = LlamaForCausalLM(config)
    init_weights(model, init_std)
    return model


def train(args):
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    text = corpus.load_text(args.text)
    train_text, _ = corpus.split_corpus(text)
    if args.vocab < 256:
        raise ValueError("--vocab must be >= 256 (the bytes), got %d" % args.vocab)
    if args.init:  # continue training a checkpoint: its config and tokenizer, not the shape options
        tokenizer = tokenizers.load_tokenizer(args.init)
    else:
        tokenizer = (tokenizers.WordTokenizer.build(train_text, args.vocab) if args.vocab > 256
                     else tokenizers.ByteTokenizer())
    data = np.asarray(tokenizer.encode(train_text), dtype=np.int32)
    vocab = tokenizer.vocab_size
    stages = parse_stages(args)
    total_steps = sum(st[2] for st in stages)
    max_len = max(st[0] for st in stages)
    if len(data) < 2 * (max_len + 1):
        raise ValueError("training text has %d tokens; need at least %d for sequences of %d"
                         % (len(data), 2 * (max_len + 1), max_len))

    if args.init:
        model = LlamaForCausalLM.from_pretrained(args.init)
        model.train()
    else:
        model = new_model(args, vocab, max_len)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, total_steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    batches = Batches(data, args, rng, vocab)
    log = []
    t0 = time.time()
    print("train_tiny: %d parameters, vocab %d, %d training tokens, stages %s, %d threads" %
          (params, vocab, len(data), " ".join("%dx%d:%d" % st[:3] for st in stages), args.threads), flush=True)
    model.train()
    window_loss = window_copy = 0.0
    window_n = 0
    schedule = [st for st in stages for _ in range(st[2])]
    for step in range(total_steps):
        T, batch, _, multi = schedule[step]
        x, copy = batches.next(T, batch, multi)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(x[:, :-1]).logits
        per_token = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1), reduction="none").view(copy.shape)
        loss = per_token.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        copy_loss = per_token[copy].mean().item() if copy.any() else float("nan")
        other_loss = per_token[~copy].mean().item()
        window_loss += other_loss
        window_copy += copy_loss
        window_n += 1
        if (step + 1) % args.log_every == 0 or step == 0 or step + 1 == total_steps:
            entry = {"step": step + 1, "seq_len": T, "loss": round(loss.item(), 4), "text_loss": round(window_loss / window_n, 4),
                     "copy_loss": round(window_copy / window_n, 4), "lr": lr_at(step),
                     "seconds": round(time.time() - t0, 1)}
            log.append(entry)
            print("step %5d  loss %.3f  text %.3f  copy %.3f  %.0fs" %
                  (entry["step"], entry["loss"], entry["text_loss"], entry["copy_loss"], entry["seconds"]), flush=True)
            window_loss = window_copy = 0.0
            window_n = 0

    model.eval()
    model.save_pretrained(args.out)
    tokenizer.save(args.out)
    info = {"args": vars(args), "parameters": params, "seconds": round(time.time() - t0, 1), "log": log,
            "torch": torch.__version__, "blas": blas_name()}
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("train_tiny: wrote %s (%.0f s)" % (args.out, info["seconds"]), flush=True)
    return info


def parse_stages(args):
    """[(seq_len, batch, steps, multi_repeat_prob)] from --stages, or the single-stage options."""
    if not args.stages:
        return [(args.seq_len, args.batch, args.steps, args.multi_repeat_prob)]
    stages = []
    for part in args.stages.split(","):
        fields = part.strip().split(":")
        try:
            if len(fields) != 4:
                raise ValueError
            st = (int(fields[0]), int(fields[1]), int(fields[2]), float(fields[3]))
            if st[0] < 2 or st[1] < 1 or st[2] < 1 or not 0.0 <= st[3] <= 1.0:
                raise ValueError
        except ValueError:
            raise ValueError("--stages: '%s' is not SEQ_LEN:BATCH:STEPS:MULTI (e.g. 128:16:1500:1.0)" % part)
        stages.append(st)
    return stages


def blas_name():
    """Which libblas.so.3 torch loaded (reference BLAS or OpenBLAS), for the log."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "libblas.so" in line or "libopenblas" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return "unknown"


def main(argv=None):
    args = parse_args(argv)
    import_torch(args.threads)
    try:
        train(args)
    except (RuntimeError, ValueError, OSError) as e:
        print("train_tiny.py: %s" % str(e).splitlines()[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
