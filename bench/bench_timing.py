"""The timing rule of the Python twins of kvsim's benchmarks (torch_reference.py, numpy_reference.py):
one warm-up call, then calls until `min_time_s` has passed and at least three were timed; the median
(Google Benchmark's aggregate kvsim's report reads is per-iteration time, so the two compare)."""
import statistics
import time


def timed(fn, min_time_s):
    fn()  # warm-up: allocator, page faults of the buffers, BLAS threads
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_time_s and len(times) >= 3:
            return statistics.median(times)
