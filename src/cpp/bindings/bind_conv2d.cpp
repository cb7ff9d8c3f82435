#include "bind_util.h"

namespace cnnfast::bind {

void bind_conv2d(py::module_& m) { (void)m; }

}  // namespace cnnfast::bind
