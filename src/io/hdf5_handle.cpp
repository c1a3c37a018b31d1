#include "src/io/hdf5_handle.hpp"

#include <vector>

namespace temoe::hdf5 {

namespace {

herr_t collect(unsigned /*index*/, const H5E_error2_t* error, void* data) {
  auto& messages = *static_cast<std::vector<std::string>*>(data);
  std::string message = error->desc != nullptr ? error->desc : "";
  if (message.empty() && error->func_name != nullptr) message = error->func_name;
  if (!message.empty() && (messages.empty() || messages.back() != message)) messages.push_back(message);
  return 0;
}

}  // namespace

std::string take_error_stack() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &messages);
  H5Eclear2(H5E_DEFAULT);
  // Downward walk: the API call first, the root cause last. Keep the last two.
  std::string text;
  const size_t first = messages.size() > 2 ? messages.size() - 2 : 0;
  for (size_t i = messages.size(); i-- > first;) text += (text.empty() ? "" : "; ") + messages[i];
  return text;
}

}  // namespace temoe::hdf5
