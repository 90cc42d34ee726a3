# Unit tests for embed/ (slipway::Network and the C ABI in libslipway.so).
# Label `stress` too: the in-process port test has a VMM thread and the network thread meeting
# through the port's rings, so the tsan preset runs it beside the ring and pool stress tests.
slipway_unit_test(test_embed embed/network_test.cpp LIBS slipway::embed slipway::test_virtio
                  LABELS unit stress)
target_include_directories(test_embed PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# The C ABI from a plain C99 program linked against libslipway.so (C is enabled for it alone).
enable_language(C)
add_executable(test_c_api embed/c_api_test.c)
set_target_properties(test_c_api PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(test_c_api PRIVATE -Wall -Wextra -Werror)
# POSIX calls (clock_gettime, poll, sockets) under -std=c99.
target_compile_definitions(test_c_api PRIVATE _POSIX_C_SOURCE=200809L)
target_link_libraries(test_c_api PRIVATE slipway::slipway)
add_test(NAME test_c_api COMMAND test_c_api)
set_tests_properties(test_c_api PROPERTIES TIMEOUT 60 LABELS unit)

# `cmake --install` into a temporary prefix, then the same C program built against it with
# find_package(slipway) and with pkg-config. Under sanitizers the consumer is built with the same
# -fsanitize flags: an instrumented libslipway.so needs the sanitizer runtime in the executable.
set(_slw_consumer_flags "")
if(SLIPWAY_SANITIZE)
  list(JOIN SLIPWAY_SANITIZE "," _slw_san)
  set(_slw_consumer_flags "-fsanitize=${_slw_san}")
endif()
add_test(NAME test_embed_install
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/embed/install_test.sh ${CMAKE_BINARY_DIR}
                 ${CMAKE_CURRENT_SOURCE_DIR}/embed ${CMAKE_C_COMPILER} ${CMAKE_COMMAND}
                 ${CMAKE_GENERATOR} "${_slw_consumer_flags}")
set_tests_properties(test_embed_install PROPERTIES TIMEOUT 120 LABELS unit)
