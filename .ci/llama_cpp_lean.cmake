# Included into llama.cpp's own CMakeLists by llama-cpp-python's build (through
# -DCMAKE_PROJECT_llama.cpp_INCLUDE=<this file> in CMAKE_ARGS) right after its project()
# call, before its options are read; and, through the variable set below, into ggml's
# right after its own project() call. Two changes to what a first install compiles
# (issue 20, docs/performance.md):
if(PROJECT_NAME STREQUAL "llama.cpp")
  # The wrapper forces LLAMA_BUILD_COMMON on, but its Python package never loads the
  # common library (nor the HTTP client compiled into it): a plain variable here shadows
  # that cache entry, which skips about a third of the compile.
  set(LLAMA_BUILD_COMMON OFF)
  # libllama (loading the model, building each batch's graph, sampling) is compiled at
  # -O1, which takes a third less time than -O3; ggml, where every matmul and attention
  # kernel runs, keeps -O3.
  set(CMAKE_C_FLAGS_RELEASE "-O1 -DNDEBUG")
  set(CMAKE_CXX_FLAGS_RELEASE "-O1 -DNDEBUG")
  set(CMAKE_PROJECT_ggml_INCLUDE "${CMAKE_CURRENT_LIST_FILE}")
elseif(PROJECT_NAME STREQUAL "ggml")
  set(CMAKE_C_FLAGS_RELEASE "-O3 -DNDEBUG")
  set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")
endif()
