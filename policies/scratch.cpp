#include "policies/scratch.h"

#include <vector>

namespace kvsim {

Eigen::Map<HeadMatrix> thread_scratch_matrix(Eigen::Index rows, Eigen::Index cols) {
  thread_local std::vector<float> buffer;
  const auto size = static_cast<std::size_t>(rows * cols);
  if (buffer.size() < size) buffer.resize(size);
  return {buffer.data(), rows, cols};
}

}  // namespace kvsim
