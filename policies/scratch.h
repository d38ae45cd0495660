#pragma once
// Per-thread scratch for the large temporaries of scoring kernels. A fresh allocation of tens of
// MiB (the [queries x keys] logits at 128K keys) is mmapped and page-faulted on every call; on a VM
// that costs more than the GEMM and serialises the threads in the kernel. This buffer only grows,
// so it is faulted in once per thread.
#include <Eigen/Core>

#include "traces/trace.h"

namespace kvsim {

// A rows x cols row-major view of this thread's scratch buffer; valid until the next call on the
// same thread. So one live view per thread: a caller must not nest calls, nor run TBB-parallel code
// while its view is live (a TBB worker waiting on nested work may pick up another task that calls
// this on the same thread).
Eigen::Map<HeadMatrix> thread_scratch_matrix(Eigen::Index rows, Eigen::Index cols);

}  // namespace kvsim
