# np_bpf_object(<name> <source>)
#   Compiles <source> (a *.bpf.c entry file) with clang -target bpf into <name>.bpf.o, with a
#   depfile so edits to any included header rebuild it, then generates <name>.skel.h with
#   `bpftool gen skeleton`. Exposes INTERFACE target np_bpf_<name> whose include directory holds
#   the skeleton; link it from exactly one .cpp's target (STYLE: include each skeleton once).
find_program(NP_CLANG NAMES clang clang-16 clang-15 clang-14 REQUIRED)
find_program(NP_BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

execute_process(COMMAND ${NP_CLANG} --version OUTPUT_VARIABLE _np_clang_version)
string(REGEX MATCH "version ([0-9]+)" _ "${_np_clang_version}")
if(CMAKE_MATCH_1 LESS 14)
  message(FATAL_ERROR "clang >= 14 is needed for BPF (found ${CMAKE_MATCH_1})")
endif()

execute_process(COMMAND uname -m OUTPUT_VARIABLE _np_arch OUTPUT_STRIP_TRAILING_WHITESPACE)
set(NP_BPF_MULTIARCH_INCLUDE /usr/include/${_np_arch}-linux-gnu)

set(NP_BPF_CFLAGS -target bpf -mcpu=v3 -O2 -g -Wall -Werror -Wno-unused-function
    -D__TARGET_ARCH_x86
    -I${CMAKE_SOURCE_DIR}/bpf/include -I${CMAKE_SOURCE_DIR}/bpf
    -idirafter ${NP_BPF_MULTIARCH_INCLUDE})

function(np_bpf_object name source)
  set(out_dir ${CMAKE_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  set(dep ${out_dir}/${name}.bpf.d)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${NP_CLANG} ${NP_BPF_CFLAGS} -MD -MF ${dep} -MT ${obj}
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${source} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${source}
    DEPFILE ${dep}
    COMMENT "BPF ${source}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${NP_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(np_bpf_${name}_gen DEPENDS ${skel})
  add_library(np_bpf_${name} INTERFACE)
  add_dependencies(np_bpf_${name} np_bpf_${name}_gen)
  target_include_directories(np_bpf_${name} INTERFACE ${out_dir})
  set_property(GLOBAL APPEND PROPERTY NP_BPF_OBJECTS ${obj})
endfunction()

# np_bpf_header_check(<name> HEADERS <abs paths...> INCLUDE_ROOTS <dirs...>)
#   Keeps "every header includes what it uses" true: for each header, a generated one-line .c
#   (`#include "<header>"`) is compiled with the BPF flags, alone and after lib/ctx_xdp.h (the
#   library must build for XDP as well as tc; the tc shim is the exception). The objects are
#   part of the default build (target <name>, in ALL), so a header that leans on include order
#   breaks the build. Include paths are written relative to the first INCLUDE_ROOT that holds them.
function(np_bpf_header_check name)
  cmake_parse_arguments(ARG "" "" "HEADERS;INCLUDE_ROOTS" ${ARGN})
  set(dir ${CMAKE_BINARY_DIR}/bpf/header_check)
  set(objs)
  foreach(header IN LISTS ARG_HEADERS)
    set(rel)
    foreach(root IN LISTS ARG_INCLUDE_ROOTS)
      cmake_path(IS_PREFIX root ${header} NORMALIZE under)
      if(under AND NOT rel)
        cmake_path(RELATIVE_PATH header BASE_DIRECTORY ${root} OUTPUT_VARIABLE rel)
      endif()
    endforeach()
    if(NOT rel)
      message(FATAL_ERROR "np_bpf_header_check: ${header} is under none of ${ARG_INCLUDE_ROOTS}")
    endif()
    string(MAKE_C_IDENTIFIER ${rel} id)
    set(variants alone)
    if(rel MATCHES "^lib/" AND NOT rel MATCHES "^lib/ctx_(skb|xdp)\\.h$")
      list(APPEND variants xdp)
    endif()
    foreach(variant IN LISTS variants)
      set(src ${dir}/${id}.${variant}.c)
      set(obj ${dir}/${id}.${variant}.o)
      if(variant STREQUAL "xdp")
        set(content "#include \"lib/ctx_xdp.h\"\n#include \"${rel}\"\n")
      else()
        set(content "#include \"${rel}\"\n")
      endif()
      file(GENERATE OUTPUT ${src} CONTENT "${content}")
      add_custom_command(
        OUTPUT ${obj}
        COMMAND ${NP_CLANG} ${NP_BPF_CFLAGS} -MD -MF ${obj}.d -MT ${obj} -c ${src} -o ${obj}
        DEPENDS ${src} ${header}
        DEPFILE ${obj}.d
        COMMENT "BPF header check ${rel} (${variant})"
        VERBATIM)
      list(APPEND objs ${obj})
    endforeach()
  endforeach()
  add_custom_target(${name} ALL DEPENDS ${objs})
endfunction()
