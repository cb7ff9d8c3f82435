#include "workspace.h"

#include <cstdlib>
#include <new>

#include <sys/mman.h>

namespace cnnfast {

namespace {

struct Buffer {
    void* data = nullptr;
    int64_t capacity = 0;  // bytes
    ~Buffer() { std::free(data); }
};

}  // namespace

void* workspace_bytes(Scratch slot, int64_t bytes) {
    thread_local Buffer buffers[static_cast<int>(Scratch::count)];
    Buffer& b = buffers[static_cast<int>(slot)];
    if (bytes <= b.capacity) return b.data;
    std::free(b.data);
    b.data = nullptr;
    b.capacity = 0;
    size_t size = (static_cast<size_t>(bytes) + 63) / 64 * 64;
    // Large buffers on 2 MiB pages where the kernel allows: GEMM's packed B block is swept once per
    // A micro-panel, and on 4 KiB pages that is a TLB miss every 4 KiB.
    const size_t huge = size_t(2) << 20;
    const bool big = size >= huge / 4;
    if (big) size = (size + huge - 1) / huge * huge;
    b.data = std::aligned_alloc(big ? huge : 64, size);
    if (!b.data) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (big) madvise(b.data, size, MADV_HUGEPAGE);
#endif
    b.capacity = bytes;
    return b.data;
}

}  // namespace cnnfast
