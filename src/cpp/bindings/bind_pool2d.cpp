#include "bind_util.h"

namespace cnnfast::bind {

void bind_pool2d(py::module_& m) { (void)m; }

}  // namespace cnnfast::bind
