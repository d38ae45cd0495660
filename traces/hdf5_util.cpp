#include "traces/hdf5_util.h"

#include <charconv>
#include <climits>
#include <filesystem>
#include <stdexcept>

#include "util/error.h"

namespace kvsim::h5 {

H5::DSetCreatPropList untimed_dataset_properties() {
  H5::DSetCreatPropList properties;
  H5Pset_obj_track_times(properties.getId(), false);
  return properties;
}

H5::Group create_group(const H5::Group& parent, const std::string& name) {
  const hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, false);
  const hid_t id = H5Gcreate2(parent.getId(), name.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  if (id < 0) throw H5::GroupIException("create_group", "cannot create group " + name);
  H5Gclose(id);
  return parent.openGroup(name);
}

H5::DataSet create_dataset(const H5::Group& parent, const std::string& name, const H5::DataType& type,
                           const H5::DataSpace& space, const H5::DSetCreatPropList& properties) {
  H5Pset_obj_track_times(properties.getId(), false);
  return parent.createDataSet(name, type, space, properties);
}

namespace {

std::string class_name(H5T_class_t type_class) {
  switch (type_class) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length sequence";
    default: return "HDF5 class " + std::to_string(static_cast<int>(type_class));
  }
}

H5::StrType utf8_vlen() {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  return type;
}

// Fixed- or variable-length, any padding; the file's own type is used as the memory type so HDF5
// never has to convert between character sets.
std::vector<std::string> read_strings(const H5::Attribute& attribute) {
  const H5::StrType type = attribute.getStrType();
  const H5::DataSpace space = attribute.getSpace();
  const auto count = static_cast<std::size_t>(space.getSimpleExtentNpoints());
  std::vector<std::string> out;
  if (count == 0) return out;
  out.reserve(count);
  if (type.isVariableStr()) {
    std::vector<char*> pointers(count, nullptr);
    attribute.read(type, pointers.data());
    for (const char* p : pointers) out.emplace_back(p != nullptr ? p : "");
    H5Dvlen_reclaim(type.getId(), space.getId(), H5P_DEFAULT, pointers.data());
  } else {
    const std::size_t size = type.getSize();
    std::vector<char> buffer(count * size);
    attribute.read(type, buffer.data());
    const bool space_padded = type.getStrpad() == H5T_STR_SPACEPAD;
    for (std::size_t i = 0; i < count; ++i) {
      std::string s(buffer.data() + i * size, size);
      s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
      if (space_padded) s.resize(s.find_last_not_of(' ') + 1);
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace

H5::FloatType float16_type() {
  H5::FloatType type(H5::PredType::IEEE_F32LE);
  type.setFields(15, 10, 5, 0, 10);  // sign bit, exponent pos/size, mantissa pos/size
  type.setSize(2);
  type.setEbias(15);
  return type;
}

std::string take_innermost_hdf5_error() {
  std::string innermost;
  // Walking upward visits the most specific error first.
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* error, void* data) -> herr_t {
        auto* text = static_cast<std::string*>(data);
        if (text->empty() && error->desc != nullptr && *error->desc != '\0') *text = error->desc;
        return 0;
      },
      &innermost);
  H5Eclear2(H5E_DEFAULT);
  return innermost;
}

std::string error_text(const H5::Exception& e) {
  const std::string innermost = take_innermost_hdf5_error();
  return innermost.empty() ? e.getDetailMsg() : innermost;
}

std::string missing_virtual_source(const H5::DataSet& dataset, const std::string& file) {
  const H5::DSetCreatPropList plist = dataset.getCreatePlist();
  const hid_t id = plist.getId();
  if (H5Pget_layout(id) != H5D_VIRTUAL) return "";
  std::size_t count = 0;
  if (H5Pget_virtual_count(id, &count) < 0) return "(its mapping list cannot be read)";
  auto text = [&](auto get, std::size_t i) {
    const ssize_t size = get(id, i, nullptr, 0);
    if (size < 0) return std::string();
    std::string s(static_cast<std::size_t>(size) + 1, '\0');
    get(id, i, s.data(), s.size());
    s.resize(static_cast<std::size_t>(size));
    return s;
  };
  for (std::size_t i = 0; i < count; ++i) {
    const std::string source = text(H5Pget_virtual_filename, i);
    const std::string name = text(H5Pget_virtual_dsetname, i);
    std::string what = "'" + source + "' (dataset " + name + ")";
    if (source == ".") {  // the virtual file itself, already open
      const hid_t f = H5Iget_file_id(dataset.getId());
      const hid_t d = f < 0 ? -1 : H5Dopen2(f, name.c_str(), H5P_DEFAULT);
      if (d >= 0) H5Dclose(d);
      if (f >= 0) H5Fclose(f);
      if (d < 0) return what;
      continue;
    }
    // HDF5 looks for a relative source name beside the virtual file as well as from the working folder.
    std::string path = source;
    if (std::filesystem::path(source).is_relative()) {
      const std::filesystem::path beside = std::filesystem::path(file).parent_path() / source;
      std::error_code ec;
      if (std::filesystem::exists(beside, ec)) path = beside.string();
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return what;
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return what;
    const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    if (d < 0) return what;
  }
  return "";
}

std::string join(const std::string& parent, const std::string& name) { return parent + "/" + name; }

std::string shape_text(const std::vector<hsize_t>& dims) {
  std::string text = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(dims[i]);
  }
  text += ']';
  return text;
}

std::vector<hsize_t> dims_of(const H5::DataSpace& space) {
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank > 0 ? rank : 0));
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  return dims;
}

void AttrReader::fail(const std::string& name, const std::string& problem) const {
  fail_input(file_, join(path_, name) + ": " + problem);
}

bool AttrReader::has(const std::string& name) const { return object_.attrExists(name); }

H5::Attribute AttrReader::open(const std::string& name, H5T_class_t expected, const char* expected_text) const {
  if (!has(name)) fail(name, std::string("missing required attribute; expected ") + expected_text);
  H5::Attribute attribute = object_.openAttribute(name);
  const H5T_class_t type_class = attribute.getTypeClass();
  // Floating-point readers also take integers (rope_theta = 10000 written by hand).
  const bool ok = type_class == expected || (expected == H5T_FLOAT && type_class == H5T_INTEGER);
  if (!ok) fail(name, "has type " + class_name(type_class) + "; expected " + expected_text);
  return attribute;
}

namespace {
void require_single(const AttrReader& reader, const std::string& name, const H5::Attribute& attribute,
                    const char* expected_text) {
  const hssize_t count = attribute.getSpace().getSimpleExtentNpoints();
  if (count != 1) reader.fail(name, "has " + std::to_string(count) + " elements; expected " + expected_text);
}
}  // namespace

std::string AttrReader::string(const std::string& name) const {
  const H5::Attribute attribute = open(name, H5T_STRING, "a string");
  require_single(*this, name, attribute, "a single string");
  return read_strings(attribute).front();
}

std::int64_t AttrReader::integer(const std::string& name) const {
  const H5::Attribute attribute = open(name, H5T_INTEGER, "an integer");
  require_single(*this, name, attribute, "a single integer");
  std::int64_t value = 0;
  attribute.read(H5::PredType::NATIVE_INT64, &value);
  return value;
}

int AttrReader::small_integer(const std::string& name) const {
  const std::int64_t value = integer(name);
  if (value < INT_MIN || value > INT_MAX) fail(name, std::to_string(value) + " is out of range for an int");
  return static_cast<int>(value);
}

std::uint64_t AttrReader::unsigned_integer(const std::string& name) const {
  const H5::Attribute attribute = open(name, H5T_INTEGER, "an unsigned integer");
  require_single(*this, name, attribute, "a single integer");
  if (attribute.getIntType().getSign() == H5T_SGN_2) {
    std::int64_t value = 0;
    attribute.read(H5::PredType::NATIVE_INT64, &value);
    if (value < 0) fail(name, "is negative (" + std::to_string(value) + "); expected an unsigned integer");
    return static_cast<std::uint64_t>(value);
  }
  std::uint64_t value = 0;
  attribute.read(H5::PredType::NATIVE_UINT64, &value);
  return value;
}

double AttrReader::real(const std::string& name) const {
  const H5::Attribute attribute = open(name, H5T_FLOAT, "a number");
  require_single(*this, name, attribute, "a single number");
  double value = 0;
  attribute.read(H5::PredType::NATIVE_DOUBLE, &value);
  return value;
}

std::vector<std::int64_t> AttrReader::integers(const std::string& name, std::vector<hsize_t>* dims) const {
  const H5::Attribute attribute = open(name, H5T_INTEGER, "an integer array");
  const H5::DataSpace space = attribute.getSpace();
  if (dims != nullptr) *dims = dims_of(space);
  std::vector<std::int64_t> values(static_cast<std::size_t>(space.getSimpleExtentNpoints()));
  if (!values.empty()) attribute.read(H5::PredType::NATIVE_INT64, values.data());
  return values;
}

std::vector<std::string> AttrReader::strings(const std::string& name) const {
  return read_strings(open(name, H5T_STRING, "a string array"));
}

std::string AttrReader::text(const std::string& name) const {
  if (!has(name)) fail(name, "missing attribute");
  const H5T_class_t type_class = object_.openAttribute(name).getTypeClass();
  if (type_class == H5T_STRING) return string(name);
  if (type_class == H5T_INTEGER) return std::to_string(integer(name));
  if (type_class == H5T_FLOAT) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, real(name));
    return std::string(buffer, result.ptr);
  }
  fail(name, "has type " + class_name(type_class) + "; expected a string or a number");
}

std::vector<std::string> AttrReader::names() const {
  std::vector<std::string> out;
  const int count = object_.getNumAttrs();
  for (int i = 0; i < count; ++i) out.push_back(object_.openAttribute(static_cast<unsigned>(i)).getName());
  return out;
}

void write_string(const H5::H5Object& object, const std::string& name, const std::string& value) {
  const H5::StrType type = utf8_vlen();
  const H5::Attribute attribute = object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  const char* pointer = value.c_str();
  attribute.write(type, &pointer);
}

void write_integer(const H5::H5Object& object, const std::string& name, std::int64_t value) {
  object.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT64, &value);
}

void write_unsigned(const H5::H5Object& object, const std::string& name, std::uint64_t value) {
  object.createAttribute(name, H5::PredType::STD_U64LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_UINT64, &value);
}

void write_real(const H5::H5Object& object, const std::string& name, double value) {
  object.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_DOUBLE, &value);
}

void write_integers(const H5::H5Object& object, const std::string& name, const std::vector<std::int64_t>& values,
                    const std::vector<hsize_t>& dims) {
  hsize_t count = 1;
  for (const hsize_t d : dims) count *= d;
  if (count != values.size()) throw std::logic_error("write_integers: " + name + " size does not match its shape");
  const H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  const H5::Attribute attribute = object.createAttribute(name, H5::PredType::STD_I64LE, space);
  if (!values.empty()) attribute.write(H5::PredType::NATIVE_INT64, values.data());
}

void write_strings(const H5::H5Object& object, const std::string& name, const std::vector<std::string>& values) {
  const H5::StrType type = utf8_vlen();
  const hsize_t count = values.size();
  const H5::Attribute attribute = object.createAttribute(name, type, H5::DataSpace(1, &count));
  std::vector<const char*> pointers;
  for (const std::string& value : values) pointers.push_back(value.c_str());
  if (!pointers.empty()) attribute.write(type, pointers.data());
}

}  // namespace kvsim::h5
