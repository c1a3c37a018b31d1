#include "src/learner/controller_file.hpp"

#include <hdf5.h>
#include <unistd.h>

#include "src/core/error.hpp"
#include "src/io/hdf5_handle.hpp"

namespace temoe {

namespace {

using hdf5::Handle;

void write_text_attribute(hid_t object, const char* name, const std::string& text) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(text.size(), 1));
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attribute(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(attribute.get(), type.get(), text.c_str());
}

}  // namespace

void save_controller(const std::filesystem::path& path, const ParameterSet& parameters, const std::string& config_text) {
  const auto temporary = path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
  {
    Handle file(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!file.valid()) TEMOE_FAIL(temporary.string() << ": cannot create an HDF5 file");
    write_text_attribute(file.get(), "config", config_text);
    write_text_attribute(file.get(), "format", "temoe controller 1");
    Handle group(H5Gcreate2(file.get(), "parameters", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    // No creation times in the file: the same parameters give the same bytes (determinism tests).
    Handle creation(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_obj_track_times(creation.get(), false);
    for (const auto& parameter : parameters.parameters()) {
      std::vector<hsize_t> dims(parameter.value.shape().begin(), parameter.value.shape().end());
      Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
      Handle dataset(H5Dcreate2(group.get(), parameter.name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                                creation.get(), H5P_DEFAULT),
                     H5Dclose);
      if (!dataset.valid() ||
          H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, parameter.value.data()) < 0) {
        TEMOE_FAIL(temporary.string() << ": writing parameter '" << parameter.name << "' failed");
      }
    }
    H5Fflush(file.get(), H5F_SCOPE_GLOBAL);
  }
  std::filesystem::rename(temporary, path);
}

namespace {

hid_t open_controller_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) TEMOE_FAIL(path.string() << ": no trained controller here (run temoe train first)");
  H5E_auto2_t handler = nullptr;
  void* data = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &handler, &data);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // report through exceptions, not HDF5's stderr dump
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  H5Eset_auto2(H5E_DEFAULT, handler, data);
  if (file < 0) TEMOE_FAIL(path.string() << ": not a readable HDF5 file");
  return file;
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* names) {
  static_cast<std::vector<std::string>*>(names)->push_back(name);
  return 0;
}

}  // namespace

std::map<std::string, std::vector<float>> read_controller_values(const std::filesystem::path& path) {
  Handle file(open_controller_file(path), H5Fclose);
  if (H5Lexists(file.get(), "parameters", H5P_DEFAULT) <= 0) TEMOE_FAIL(path.string() << ": no /parameters group");
  Handle group(H5Gopen2(file.get(), "parameters", H5P_DEFAULT), H5Gclose);
  std::vector<std::string> names;
  H5Literate(group.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names);
  std::map<std::string, std::vector<float>> values;
  for (const auto& name : names) {
    Handle dataset(H5Dopen2(group.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    std::vector<float>& target = values[name];
    target.resize(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
    if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, target.data()) < 0) {
      TEMOE_FAIL(path.string() << ": reading parameter '" << name << "' failed");
    }
  }
  return values;
}

void load_controller(const std::filesystem::path& path, ParameterSet& parameters) {
  Handle file(open_controller_file(path), H5Fclose);
  for (auto& parameter : parameters.parameters()) {
    const std::string name = "parameters/" + parameter.name;
    if (H5Lexists(file.get(), "parameters", H5P_DEFAULT) <= 0 || H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) <= 0) {
      TEMOE_FAIL(path.string() << ": missing dataset '" << name << "' (trained with other controller settings?)");
    }
    Handle dataset(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    std::vector<hsize_t> dims(static_cast<size_t>(std::max(H5Sget_simple_extent_ndims(space.get()), 0)));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    const Shape shape(dims.begin(), dims.end());
    if (shape != parameter.value.shape()) {
      TEMOE_FAIL(path.string() << ": parameter '" << parameter.name << "' has shape " << shape_string(shape)
                               << ", the controllers expect " << shape_string(parameter.value.shape())
                               << " (evaluate with the run's controller.* settings)");
    }
    if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, parameter.value.data()) < 0) {
      TEMOE_FAIL(path.string() << ": reading parameter '" << parameter.name << "' failed");
    }
  }
}

}  // namespace temoe
