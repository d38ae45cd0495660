#pragma once
// Layers, score matrices and cache snapshots are large, short-lived buffers. glibc would mmap and
// unmap each one, paying page faults on every layer (measured: 40% of a 32K-token run, and 50% of
// the SnapKV scoring benchmark); keeping freed memory in the heap for reuse avoids that.
// Call once at program start (kvsim and the benchmarks do).
namespace kvsim {
void tune_allocator();
}  // namespace kvsim
