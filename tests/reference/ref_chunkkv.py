"""Independent float64 reference for chunkkv (policy-notes.md "ChunkKV"; NVIDIA/kvpress chunkkv_press.py).

kvpress: per-entry SnapKV scores summed over KV heads, chunks of chunk_length consecutive entries
scored by their mean, the best whole chunks kept, the same indices in every head; no whole chunk
-> the base press (SnapKV per head). kvsim's documented budget rounding (policies/chunkkv.cpp):
with S resident entries, w in the window and capacity C, the S - w older entries are cut from the
oldest into m = floor((S - w)/L) whole chunks and rho leftover entries next to the window; window
and leftover are always kept, plus the best floor((C - w - rho)/L) chunks (clamped to [0, m]);
with m = 0, SnapKV per head at capacity C.
"""
import kvref
import ref_pyramidkv as rp


def chunkkv_step(p, lay, chunk):
    chunks = kvref.prefill_chunks(lay.n, chunk)
    L = p.chunk_length

    def step(j, resident):
        cap = rp.uniform_capacity(p, lay.n, chunks, j)
        cache = resident[0]
        assert all(len(r) == len(cache) and (r == cache).all() for r in resident), "heads share positions"
        S = len(cache)
        if S <= cap:
            return None
        a, b = chunks[j]
        wp = p.window_positions(a, b)
        m = (S - len(wp)) // L
        if m == 0:
            return rp.snapkv_competitions(p, lay, j, resident, cap, chunks)
        tail = S - m * L
        keep = min(max((cap - tail) // L, 0), m)
        total = None
        for h in range(len(resident)):
            s = rp.snapkv_head_scores(p, lay, h, cache, wp)
            total = s if total is None else total + s
        raw = {c: float(total[c * L:(c + 1) * L].mean()) for c in range(m)}
        members = {c: [(h, int(t)) for h in range(len(resident)) for t in cache[c * L:(c + 1) * L]] for c in range(m)}
        always = [(h, int(t)) for h in range(len(resident)) for t in cache[S - tail:]]
        return always, [rp.Competition(rp.ranked(range(m), raw), raw, keep, members)]

    return step
