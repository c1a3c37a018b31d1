#include "src/learner/controller_file.hpp"

#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <vector>

#include "src/core/error.hpp"
#include "src/io/atomic_file.hpp"
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

// The file is built in memory (HDF5's core driver, no backing store) and its image returned: the
// bytes then go to disk through one checked write, so a full disk fails there, cleanly, and never
// inside HDF5 (whose file would stay open, unflushable, until the process ends).
std::vector<char> controller_file_image(const std::filesystem::path& path, const ParameterSet& parameters,
                                        const std::string& config_text) {
  const hdf5::SilenceErrors silence;
  Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!access.valid() || H5Pset_fapl_core(access.get(), 1 << 16, false) < 0) {
    TEMOE_FAIL(path.string() << ": cannot set up an in-memory HDF5 file");
  }
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()), H5Fclose);
  if (!file.valid()) TEMOE_FAIL(path.string() << ": cannot create an HDF5 file");
  {
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
        TEMOE_FAIL(path.string() << ": writing parameter '" << parameter.name << "' failed");
      }
    }
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) TEMOE_FAIL(path.string() << ": flushing the in-memory file failed");
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);
  if (size <= 0) TEMOE_FAIL(path.string() << ": cannot size the in-memory file");
  std::vector<char> image(static_cast<size_t>(size));
  if (H5Fget_file_image(file.get(), image.data(), image.size()) != size) {
    TEMOE_FAIL(path.string() << ": cannot copy the in-memory file");
  }
  return image;
}

}  // namespace

// Durable like a checkpoint commit (write_file_atomically): a temporary beside the target, every
// write and the close checked, fsync, rename, fsync of the directory. A failure at any point (a full disk, say) removes
// the temporary and leaves the previous controller.h5 as it was.
void save_controller(const std::filesystem::path& path, const ParameterSet& parameters, const std::string& config_text) {
  for (const auto& parameter : parameters.parameters()) {
    const float* values = parameter.value.data();
    for (int64_t i = 0; i < parameter.value.numel(); ++i) {
      if (!std::isfinite(values[i])) {
        TEMOE_FAIL(path.string() << ": refusing to write parameter '" << parameter.name << "': element " << i
                                 << " is " << values[i] << " (a controller file holds finite values only)");
      }
    }
  }
  const std::vector<char> image = controller_file_image(path, parameters, config_text);
  write_file_atomically(path, [&](std::ostream& stream) { stream.write(image.data(), static_cast<std::streamsize>(image.size())); });
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
