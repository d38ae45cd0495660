// --save-kept: which entries each policy kept, for researchers to look at (issue 3 item 7).
#include <H5Cpp.h>

#include "sim/replay/report.h"
#include "traces/hdf5_writer.h"

namespace kvsim {

void write_kept_masks(const std::string& path, const ScenarioRun& run) {
  write_hdf5_file(path, [&](Hdf5Writer& writer) {
    const H5::StrType str_type(H5::PredType::C_S1, H5T_VARIABLE);
    const H5::Group& policies = writer.group(writer.root(), "policies");
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const PolicyResult& r = run.results[p];
      const H5::Group& group = writer.group(policies, std::to_string(p));
      group.createAttribute("spec", str_type, H5::DataSpace(H5S_SCALAR)).write(str_type, r.spec);
      const H5::Group& requests = writer.group(group, "requests");
      const H5::Group& request = writer.group(requests, run.request.id);
      for (const auto& [layer, mask] : r.kept_masks) {
        const hsize_t dims[2] = {static_cast<hsize_t>(run.model.num_kv_heads),
                                 static_cast<hsize_t>(run.request.total_tokens())};
        const H5::Group& layer_group = writer.group(request, "layer_" + std::to_string(layer));
        const H5::DataSet& data = writer.dataset(layer_group, "kept", H5::PredType::STD_U8LE, H5::DataSpace(2, dims));
        data.write(mask.data(), H5::PredType::NATIVE_UINT8);
        writer.close(data);
        writer.close(layer_group);
      }
      writer.close(request);
      writer.close(requests);
      writer.close(group);
    }
    writer.close(policies);
  });
}

}  // namespace kvsim
