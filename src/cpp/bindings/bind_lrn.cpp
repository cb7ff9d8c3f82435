#include "bind_util.h"

namespace cnnfast::bind {

void bind_lrn(py::module_& m) { (void)m; }

}  // namespace cnnfast::bind
