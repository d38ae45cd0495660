#include "util/allocator.h"

#include <malloc.h>

namespace kvsim {

void tune_allocator() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace kvsim
