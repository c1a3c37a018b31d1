#include "src/tensor/tensor.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "src/core/checked_size.hpp"
#include "src/core/error.hpp"
#include "src/tensor/device_memory.hpp"

namespace temoe {

std::string shape_string(const Shape& shape) {
  std::ostringstream stream;
  stream << "[";
  for (size_t i = 0; i < shape.size(); ++i) stream << (i ? ", " : "") << shape[i];
  stream << "]";
  return stream.str();
}

int64_t element_count(const Shape& shape) {
  // numel() runs in loops: the message (and its std::string) only when the check fails.
  int64_t count = 0;
  return product_fits(shape, count) ? count : checked_product(shape, "tensor");
}

Tensor::Tensor(Shape shape, Device device) : shape_(std::move(shape)), device_(device) {
  const int64_t bytes = checked_bytes(shape_, static_cast<int64_t>(sizeof(float)), "tensor");
  storage_ = allocate_device_memory(device_, static_cast<size_t>(std::max<int64_t>(bytes, sizeof(float))));
}

Tensor Tensor::zeros(Shape shape) {
  Tensor tensor(std::move(shape));
  tensor.fill(0.0f);
  return tensor;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values) {
  Tensor tensor(std::move(shape));
  TEMOE_CHECK(static_cast<int64_t>(values.size()) == tensor.numel(),
              values.size() << " values for shape " << shape_string(tensor.shape()));
  std::copy(values.begin(), values.end(), tensor.data());
  return tensor;
}

int64_t Tensor::dim(int axis) const {
  TEMOE_CHECK(axis >= 0 && axis < rank(), "axis " << axis << " out of range for shape " << shape_string(shape_));
  return shape_[axis];
}

Tensor Tensor::reshaped(Shape shape) const {
  TEMOE_CHECK(element_count(shape) == numel(),
              "cannot reshape " << shape_string(shape_) << " to " << shape_string(shape));
  Tensor view = *this;
  view.shape_ = std::move(shape);
  return view;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  TEMOE_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
              "rows [" << begin << ", " << end << ") out of range for shape " << shape_string(shape_));
  Tensor view = *this;
  const int64_t row_size = shape_[0] == 0 ? 0 : numel() / shape_[0];
  view.offset_ = offset_ + begin * row_size;
  view.shape_[0] = end - begin;
  return view;
}

Tensor Tensor::clone() const {
  Tensor copy(shape_, device_);
  copy_device_memory(device_, copy.data(), data(), static_cast<size_t>(numel()) * sizeof(float));
  return copy;
}

void Tensor::fill(float value) {
  TEMOE_CHECK(device_ == Device::cpu, "fill() on a " << to_string(device_) << " tensor");
  std::fill(data(), data() + numel(), value);
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> values(static_cast<size_t>(numel()));
  copy_to_host(device_, values.data(), data(), values.size() * sizeof(float));
  return values;
}

Tensor to_device(const Tensor& tensor, Device device) {
  if (tensor.device() == device) return tensor.clone();
  Tensor copy(tensor.shape(), device);
  const size_t bytes = static_cast<size_t>(tensor.numel()) * sizeof(float);
  if (device == Device::cpu) {
    copy_to_host(tensor.device(), copy.data(), tensor.data(), bytes);
  } else {
    copy_device_memory(device, copy.data(), tensor.data(), bytes);  // an upload from host memory
  }
  return copy;
}

Tensor to_host(const Tensor& tensor) {
  if (!tensor.defined() || tensor.device() == Device::cpu) return tensor;
  Tensor copy(tensor.shape());
  copy_to_host(tensor.device(), copy.data(), tensor.data(), static_cast<size_t>(tensor.numel()) * sizeof(float));
  return copy;
}

void check_shape(const Tensor& tensor, const Shape& expected, const char* what) {
  TEMOE_CHECK(tensor.shape() == expected, what << " has shape " << shape_string(tensor.shape())
                                              << ", expected " << shape_string(expected));
}

void check_rank(const Tensor& tensor, int rank, const char* what) {
  TEMOE_CHECK(tensor.rank() == rank, what << " has shape " << shape_string(tensor.shape()) << ", expected rank " << rank);
}

void check_host(const Tensor& tensor, const char* what) {
  TEMOE_CHECK(tensor.device() == Device::cpu, what << " is on " << to_string(tensor.device())
                                                   << ", the CPU backend needs host tensors");
}

}  // namespace temoe
