#pragma once
// Small helpers over the HDF5 C++ API for the trace format (DESIGN.md §3): a float16 type, error
// text, and attribute readers/writers that accept what h5py writes (variable-length UTF-8 strings,
// any integer width) and report problems as one-line InputErrors naming the attribute.
#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvsim::h5 {

// IEEE binary16, little-endian: the layout numpy/h5py use for float16. HDF5 1.10 has no predefined
// half type, so it is derived from float32; HDF5 converts to and from float on read and write.
H5::FloatType float16_type();

// Objects created without modification times, so the same content gives a byte-identical file
// (kvsim's determinism promise covers its output files too).
H5::DSetCreatPropList untimed_dataset_properties();
H5::Group create_group(const H5::Group& parent, const std::string& name);
H5::DataSet create_dataset(const H5::Group& parent, const std::string& name, const H5::DataType& type,
                           const H5::DataSpace& space,
                           const H5::DSetCreatPropList& properties = untimed_dataset_properties());

// The most specific message on HDF5's error stack (e.g. "truncated file: eof = ..."), falling back
// to the exception's own text; clears the stack. Call from the catch block of `e`.
std::string error_text(const H5::Exception& e);

// The most specific message on HDF5's error stack (empty if none); the stack is cleared.
std::string take_innermost_hdf5_error();

// For a virtual dataset (HDF5 VDS, layout H5D_VIRTUAL) of `file`: the first source it maps that
// cannot be opened, as "'<source file>' (dataset <name>)"; empty when every source opens or the
// dataset is not virtual. HDF5 reads a missing source as the fill value (zeros), silently.
std::string missing_virtual_source(const H5::DataSet& dataset, const std::string& file);

// "/requests/0" + "keys" -> "/requests/0/keys"; "" + "format" -> "/format".
std::string join(const std::string& parent, const std::string& name);

// "[8,100,64]"
std::string shape_text(const std::vector<hsize_t>& dims);

// A dataset's or attribute's dimensions (empty for a scalar).
std::vector<hsize_t> dims_of(const H5::DataSpace& space);

// Reads the attributes of one object; every error is fail_input(file, "<object>/<name>: ...").
class AttrReader {
 public:
  AttrReader(std::string file, const H5::H5Object& object, std::string object_path)
      : file_(std::move(file)), object_(object), path_(std::move(object_path)) {}

  bool has(const std::string& name) const;
  std::string string(const std::string& name) const;
  std::int64_t integer(const std::string& name) const;
  // An integer that must fit an int (model dimensions, layer indices).
  int small_integer(const std::string& name) const;
  std::uint64_t unsigned_integer(const std::string& name) const;
  // Floating point; an integer attribute is accepted too (rope_theta = 10000).
  double real(const std::string& name) const;
  // An integer array of any rank (a scalar counts as one element); `dims` receives its shape.
  std::vector<std::int64_t> integers(const std::string& name, std::vector<hsize_t>* dims = nullptr) const;
  std::vector<std::string> strings(const std::string& name) const;
  // A string or number rendered as text (free-form generator parameters).
  std::string text(const std::string& name) const;
  // Names of all attributes of the object.
  std::vector<std::string> names() const;

  [[noreturn]] void fail(const std::string& name, const std::string& problem) const;

 private:
  H5::Attribute open(const std::string& name, H5T_class_t expected, const char* expected_text) const;

  std::string file_;
  const H5::H5Object& object_;
  std::string path_;
};

// Writers: scalar attributes and 1-D/2-D arrays. Strings are variable-length UTF-8, as h5py writes.
void write_string(const H5::H5Object& object, const std::string& name, const std::string& value);
void write_integer(const H5::H5Object& object, const std::string& name, std::int64_t value);
void write_unsigned(const H5::H5Object& object, const std::string& name, std::uint64_t value);
void write_real(const H5::H5Object& object, const std::string& name, double value);
void write_integers(const H5::H5Object& object, const std::string& name, const std::vector<std::int64_t>& values,
                    const std::vector<hsize_t>& dims);
void write_strings(const H5::H5Object& object, const std::string& name, const std::vector<std::string>& values);

}  // namespace kvsim::h5
