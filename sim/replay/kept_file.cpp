// --save-kept: which entries each policy kept, for researchers to look at (issue 3 item 7).
#include <H5Cpp.h>

#include "sim/replay/report.h"
#include "traces/hdf5_util.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace kvsim {

void write_kept_masks(const std::string& path, const ScenarioRun& run) {
  const std::string temporary = temporary_path_for(path);
  try {
    H5::Exception::dontPrint();
    H5::H5File file(temporary, H5F_ACC_TRUNC);
    const H5::StrType str_type(H5::PredType::C_S1, H5T_VARIABLE);
    H5::Group policies = h5::create_group(file.openGroup("/"), "policies");
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const PolicyResult& r = run.results[p];
      H5::Group group = h5::create_group(policies, std::to_string(p));
      group.createAttribute("spec", str_type, H5::DataSpace(H5S_SCALAR)).write(str_type, r.spec);
      H5::Group request = h5::create_group(h5::create_group(group, "requests"), run.request.id);
      for (const auto& [layer, mask] : r.kept_masks) {
        const hsize_t dims[2] = {static_cast<hsize_t>(run.model.num_kv_heads),
                                 static_cast<hsize_t>(run.request.total_tokens())};
        H5::Group layer_group = h5::create_group(request, "layer_" + std::to_string(layer));
        H5::DataSet data = h5::create_dataset(layer_group, "kept", H5::PredType::STD_U8LE, H5::DataSpace(2, dims));
        data.write(mask.data(), H5::PredType::NATIVE_UINT8);
      }
    }
    file.close();
  } catch (const H5::Exception& e) {
    std::remove(temporary.c_str());
    fail_input(path, "cannot write kept masks: " + std::string(e.getCDetailMsg()));
  }
  commit_temporary(temporary, path);
}

}  // namespace kvsim
