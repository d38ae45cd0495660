#pragma once
// Outputs never overwrite inputs (issue 17 item 2): `kvsim run s.ini --save-kept t.h5` where s.ini
// reads t.h5 used to replace the trace with a mask file. Every command checks its output paths
// against the files it reads, before any work, with the same two functions.
#include <string>
#include <vector>

namespace kvsim {

// Throws InputError naming `output` if it is the same file as one of `inputs`: the same path after
// resolving '..' and symbolic links, or another name of the same file (a hard link). `option`
// names the output in the message ("--save-kept"). Paths that do not exist yet never match.
void refuse_output_over_inputs(const std::string& output, const std::vector<std::string>& inputs,
                               const std::string& option);

// The same for an output folder that is replaced or filled as a whole: also refused when it is one
// of the inputs or an input lies inside it.
void refuse_folder_over_inputs(const std::string& dir, const std::vector<std::string>& inputs,
                               const std::string& option);

}  // namespace kvsim
