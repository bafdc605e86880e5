#!/usr/bin/env bash
# Prepares a lent GPU machine for tuning/gpu_bench.py, from the repository root there:
#   - builds llama.cpp with CUDA from the sources llama-cpp-python 0.3.36 vendors (.gpu/llama.cpp-slim.tgz,
#     made by ../shared/tools/slim-llama-src.sh), targets: the shared library, llama-bench, llama-fit-params;
#   - installs moetui's pure-Python needs from carried wheels (.whl/) and llama-cpp-python's Python package
#     (.gpu/pysite/llama_cpp) so that LLAMA_CPP_LIB_PATH points it at the CUDA build.
# Idempotent: a warm machine skips what is already there. Source it: `source tuning/gpu/setup.sh`.
set -eo pipefail
LCPP=/tmp/lcpp
export MOETUI_GPU_BIN=$LCPP/build/bin
if [ ! -x "$MOETUI_GPU_BIN/llama-bench" ] && ls .gpu/cuda-bin.tgz.* >/dev/null 2>&1; then
  # a build brought back from an earlier machine (see below): saves the ~280 s build on a cold machine
  mkdir -p $MOETUI_GPU_BIN && cat .gpu/cuda-bin.tgz.* | tar xz -C $MOETUI_GPU_BIN
fi
if [ ! -x "$MOETUI_GPU_BIN/llama-bench" ]; then
  mkdir -p $LCPP && tar xzf "$(ls .gpu/llama.cpp-slim.tgz .gpu-src/llama.cpp-slim.tgz 2>/dev/null | head -1)" -C $LCPP
  # with MOETUI_GPU_SERVER=1 on a fresh machine llama-server comes from the same tree: ggml-cuda, most of the
  # build's time, compiles once. The server needs tools/ui's CMake files, which the slim sources leave out:
  # .gpu/llama-ui.tgz carries them (no web assets are fetched: the machine has no network)
  server=OFF; server_target=
  if [ "${MOETUI_GPU_SERVER:-0}" = 1 ] && [ -f .gpu/llama-ui.tgz ]; then
    tar xzf .gpu/llama-ui.tgz -C $LCPP; server=ON; server_target=llama-server
  fi
  t0=$(date +%s)
  cmake -S $LCPP/llama.cpp -B $LCPP/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=$server \
    -DLLAMA_USE_PREBUILT_UI=OFF > $LCPP/cmake.log
  cmake --build $LCPP/build -j "$(nproc)" --target llama llama-bench llama-fit-params $server_target > $LCPP/build.log
  echo "llama.cpp CUDA build: $(( $(date +%s) - t0 )) s"
  if [ -n "$OUT" ]; then  # bring the build back (copy it to .gpu/cuda-bin.tgz here) for the next cold machine
    (cd $MOETUI_GPU_BIN && strip --strip-unneeded *.so* llama-bench llama-fit-params $server_target 2>/dev/null;
     tar cz *.so* llama-bench llama-fit-params | split -b 15M - $OUT/cuda-bin.tgz.  # 16 MiB a file comes back
     if [ -n "$server_target" ]; then tar cz llama-server | split -b 15M - $OUT/cuda-server.tgz.; fi)
  fi
fi
if [ "${MOETUI_GPU_SERVER:-0}" = 1 ] && [ ! -x "$MOETUI_GPU_BIN/llama-server" ]; then
  # llama-server too (tuning/exported_lines.py): from a build brought back, else built here (~280 s: the build
  # tree is not carried, so ggml-cuda compiles again) and brought back as cuda-server.tgz.* beside cuda-bin
  if ls .gpu/cuda-server.tgz.* >/dev/null 2>&1; then
    cat .gpu/cuda-server.tgz.* | tar xz -C $MOETUI_GPU_BIN
  else
    [ -d $LCPP/llama.cpp ] || { mkdir -p $LCPP && tar xzf "$(ls .gpu/llama.cpp-slim.tgz .gpu-src/llama.cpp-slim.tgz 2>/dev/null | head -1)" -C $LCPP; }
    [ -d $LCPP/llama.cpp/tools/ui/src ] || tar xzf .gpu/llama-ui.tgz -C $LCPP
    t0=$(date +%s)
    cmake -S $LCPP/llama.cpp -B $LCPP/build-server -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
      -DLLAMA_USE_PREBUILT_UI=OFF > $LCPP/cmake-server.log
    cmake --build $LCPP/build-server -j "$(nproc)" --target llama-server > $LCPP/build-server.log
    echo "llama-server CUDA build: $(( $(date +%s) - t0 )) s"
    (cd $LCPP/build-server/bin && strip --strip-unneeded llama-server *.so* 2>/dev/null
     for f in llama-server *.so*; do [ -e "$MOETUI_GPU_BIN/$f" ] || cp -a "$f" "$MOETUI_GPU_BIN/"; done)
    cp -a $LCPP/build-server/bin/llama-server $MOETUI_GPU_BIN/
    if [ -n "$OUT" ]; then  # what the server adds to the carried build (its own libraries), 15 MB a part
      carried=$(cat .gpu/cuda-bin.tgz.* 2>/dev/null | tar tz 2>/dev/null || true)
      (cd $LCPP/build-server/bin && tar cz llama-server $(for f in *.so*; do
         grep -qx "$f" <<< "$carried" || echo "$f"; done) | split -b 15M - $OUT/cuda-server.tgz.)
    fi
  fi
fi
if [ ! -d /tmp/site/llama_cpp ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  cp -r .gpu/pysite/llama_cpp /tmp/site/
fi
export PYTHONPATH=/tmp/site:$PWD LLAMA_CPP_LIB_PATH=$MOETUI_GPU_BIN PYTHONUNBUFFERED=1
export MOETUI_DATA_DIR=/tmp/moetui-data MOETUI_CACHE_DIR=/tmp/moetui-cache
