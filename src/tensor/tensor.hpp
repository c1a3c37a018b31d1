#pragma once
// A dense fp32 tensor that knows its device. Storage is shared between copies (like a view); use
// clone() for a deep copy. Everything the model computes is fp32; stored BF16/F16 weights are
// converted when they are loaded.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/tensor/device.hpp"

namespace temoe {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);
// The product of the extents; throws temoe::Error on a negative extent or on int64 overflow
// (src/core/checked_size.hpp; readers call checked_product themselves to name their file).
int64_t element_count(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised storage on the given device.
  explicit Tensor(Shape shape, Device device = Device::cpu);

  static Tensor zeros(Shape shape);                                   // host
  static Tensor from_vector(Shape shape, const std::vector<float>& values);  // host

  const Shape& shape() const { return shape_; }
  int64_t dim(int axis) const;
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return element_count(shape_); }
  Device device() const { return device_; }
  bool defined() const { return storage_ != nullptr; }

  float* data() { return storage_.get() + offset_; }
  const float* data() const { return storage_.get() + offset_; }

  // Same storage, new shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) of the first axis, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;
  Tensor clone() const;
  void fill(float value);
  std::vector<float> to_vector() const;

 private:
  std::shared_ptr<float> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  Device device_ = Device::cpu;
};

// A deep copy of `tensor` in `device`'s memory (a device a CPU-only build lacks throws there).
Tensor to_device(const Tensor& tensor, Device device);

// `tensor` itself when it is in host memory, else a host copy of it (which waits for the device).
Tensor to_host(const Tensor& tensor);

// Throws with both shapes when `tensor` does not have `expected` shape; `what` names the argument.
void check_shape(const Tensor& tensor, const Shape& expected, const char* what);
// Throws, naming the argument and its shape, unless `tensor` has `rank` axes.
void check_rank(const Tensor& tensor, int rank, const char* what);
// Throws unless `tensor` lives in host memory (what the CPU kernels need).
void check_host(const Tensor& tensor, const char* what);

}  // namespace temoe
