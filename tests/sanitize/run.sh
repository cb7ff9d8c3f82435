#!/usr/bin/env bash
# Runs the C/C++ side of cnnfast under AddressSanitizer + UndefinedBehaviorSanitizer, then a
# small case under valgrind. Not part of `pytest -q tests` (it takes several minutes on 2 cores);
# run it by hand or in a nightly job:
#
#     tests/sanitize/run.sh            # MUTATIONS=20000 tests/sanitize/run.sh for a longer fuzz
#
# 1. builds the C-only configuration with -DCNNFAST_SANITIZE=ON in build/asan (kernels + C API:
#    libcnnfast.a / libcnnfast.so, all with -fsanitize=address,undefined);
# 2. writes model files with the Python package (the in-place developer build, ./dev/build.sh);
# 3. builds tests/cpp/test_kernels.cpp (fast kernels vs naive, Network, model-file reader fed
#    the valid files and MUTATIONS corrupted copies of each) and the examples classify.c and
#    predict_threads.c against the sanitized library, and runs them: any ASan/UBSan/LSan report
#    aborts the run with a non-zero status;
# 4. builds the same without sanitizers in build/valgrind and runs a small case of each program
#    under valgrind --error-exitcode=1 (memcheck; valgrind masks AVX-512, so the AVX2 paths run).
# Prints one line per run and a final count; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MUTATIONS=${MUTATIONS:-3000}
JOBS=${JOBS:-2}
OUT=$ROOT/build/asan/run
mkdir -p "$OUT"
runs=0

say() { printf '%s\n' "$*"; }
run() {  # run LABEL CMD...: runs CMD, logs to $OUT/LABEL.log, fails loudly on non-zero exit
    local label=$1; shift
    if "$@" >"$OUT/$label.log" 2>&1; then
        runs=$((runs + 1))
        say "ok    $label  ($(tail -1 "$OUT/$label.log"))"
    else
        say "FAIL  $label (exit $?); log: $OUT/$label.log"
        tail -40 "$OUT/$label.log"
        exit 1
    fi
}

# 1. the sanitized C-only build
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNFAST_BUILD_PYTHON=OFF \
    -DCNNFAST_SANITIZE=ON >/dev/null
cmake --build build/asan -j"$JOBS" >/dev/null
say "built build/asan (CNNFAST_SANITIZE=ON)"

# 2. model files and inputs from Python
./dev/build.sh >/dev/null
PYTHONPATH=$ROOT python3 - "$OUT" <<'EOF'
import sys, pathlib
import numpy as np
import cnnfast as cf
out = pathlib.Path(sys.argv[1])
cf.set_seed(0)
L = cf.layers
models = {
    "lenet5": cf.models.lenet5(),
    "every_layer": cf.Sequential([
        L.Input((12, 12, 3)), L.Conv2D(8, 3, padding="same", activation="relu"),
        L.LocalResponseNormalization(2), L.MaxPooling2D(2), L.Conv2D(8, (3, 2), groups=2, activation="elu"),
        L.AveragePooling2D(2, padding="same"), L.PReLU(shared_axes=[1, 2]), L.ELU(0.5),
        L.Activation("swish"), L.Flatten(), L.Dropout(0.5), L.Dense(16, activation="tanh"),
        L.Dense(4, activation="softmax")]),
}
# A graph: a residual Add, a shared convolution, every other merge, a concatenation.
x = L.Input((8, 8, 3))
h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
shared = L.Conv2D(4, 3, padding="same")
s = L.ReLU()(L.add([shared(h), h]))
s2 = shared(s)
m = L.concatenate([L.maximum([s, s2]), L.subtract([s2, h]), L.average([h, s]), L.multiply([s, h])])
models["graph"] = cf.Model(x, L.Dense(3, activation="softmax")(L.Flatten()(m)))
for name, model in models.items():
    model.save(out / f"{name}.cnnfast")
    rng = np.random.default_rng(1)
    x = rng.random((4,) + model.input_shape_).astype(np.float32)
    x.tofile(out / f"{name}.input.f32")
    x[:1].tofile(out / f"{name}.one.f32")
    model.predict(x).astype(np.float32).tofile(out / f"{name}.expected.f32")
EOF
say "wrote model files and inputs to $OUT"

# 3. programs against the sanitized library, run under ASan + UBSan (+ LeakSanitizer)
# As CMakeLists.txt's CNNFAST_SANITIZE.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
g++ -std=c++17 -O1 $SAN -fopenmp -Isrc/cpp/kernels -Isrc/cpp/plan -Isrc/cpp/capi tests/cpp/test_kernels.cpp \
    build/asan/libcnnfast.a -o "$OUT/test_kernels"
cc -O1 $SAN -Iinclude examples/classify.c -Lbuild/asan -lcnnfast -Wl,-rpath,"$ROOT/build/asan" \
    -o "$OUT/classify"
cc -O1 $SAN -Iinclude examples/predict_threads.c -Lbuild/asan -lcnnfast -Wl,-rpath,"$ROOT/build/asan" \
    -lpthread -o "$OUT/predict_threads"
for name in lenet5 every_layer graph; do
    run "asan_test_kernels_$name" "$OUT/test_kernels" "$OUT/$name.cnnfast" "$MUTATIONS"
    run "asan_classify_$name" "$OUT/classify" "$OUT/$name.cnnfast" "$OUT/$name.one.f32" --threads 2
    run "asan_predict_threads_$name" "$OUT/predict_threads" "$OUT/$name.cnnfast" \
        "$OUT/$name.input.f32" "$OUT/$name.expected.f32" 4 25
done
# Failures must be reported, not crash: a corrupt file and a wrong-size input.
head -c 300 "$OUT/lenet5.cnnfast" >"$OUT/truncated.cnnfast"
run asan_classify_truncated_file bash -c \
    "! '$OUT/classify' '$OUT/truncated.cnnfast' '$OUT/lenet5.one.f32' 2>&1 | tee /dev/stderr | grep -q AddressSanitizer && echo 'refused cleanly'"
run asan_classify_wrong_size_input bash -c \
    "! '$OUT/classify' '$OUT/lenet5.cnnfast' '$OUT/every_layer.one.f32' 2>&1 | tee /dev/stderr | grep -q AddressSanitizer && echo 'refused cleanly'"

# 4. valgrind on small cases (an unsanitized build: valgrind and ASan cannot be combined)
if command -v valgrind >/dev/null; then
    cmake -S . -B build/valgrind -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNFAST_BUILD_PYTHON=OFF \
        -DCNNFAST_SANITIZE=OFF >/dev/null
    cmake --build build/valgrind -j"$JOBS" >/dev/null
    g++ -std=c++17 -O1 -g -fopenmp -Isrc/cpp/kernels -Isrc/cpp/plan -Isrc/cpp/capi tests/cpp/test_kernels.cpp \
        build/valgrind/libcnnfast.a -o "$OUT/test_kernels_plain"
    cc -O1 -g -Iinclude examples/classify.c -Lbuild/valgrind -lcnnfast \
        -Wl,-rpath,"$ROOT/build/valgrind" -o "$OUT/classify_plain"
    VG="valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite -q"
    export OMP_NUM_THREADS=1  # libgomp's thread pool otherwise shows as "possibly lost"
    run valgrind_test_kernels $VG "$OUT/test_kernels_plain" "$OUT/every_layer.cnnfast" 200
    run valgrind_classify $VG "$OUT/classify_plain" "$OUT/lenet5.cnnfast" "$OUT/lenet5.one.f32"
else
    say "valgrind not found: skipped the valgrind runs"
fi
say "sanitizer runs: $runs, all clean"
