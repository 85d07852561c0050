# Included into llama.cpp's own CMakeLists by llama-cpp-python's build (through
# -DCMAKE_PROJECT_llama.cpp_INCLUDE=<this file> in CMAKE_ARGS), before its options are read.
# The wrapper forces LLAMA_BUILD_COMMON on, but its Python package never loads the common
# library (nor the HTTP client compiled into it): a plain variable here shadows that cache
# entry, which skips about a third of the compile (issue 20, docs/performance.md).
set(LLAMA_BUILD_COMMON OFF)
