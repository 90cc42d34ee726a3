# Shared compile settings: warnings are errors and stay PRIVATE to our own targets (DESIGN §6).

if(SLIPWAY_SANITIZE)
  list(JOIN SLIPWAY_SANITIZE "," _slw_san)
  add_compile_options(-fsanitize=${_slw_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_slw_san})
  if("thread" IN_LIST SLIPWAY_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # Boost.Asio's reactor uses std::atomic_thread_fence, which g++ warns TSan does not model
    # (-Wtsan). Our cross-thread code meets only through the SPSC ring's acquire/release pairs
    # and an eventfd; the fence is on Asio's single-threaded path (concurrency hint 1).
    add_compile_options(-Wno-error=tsan)
  endif()
endif()

if(SLIPWAY_BUILD_FUZZ)
  # Instrument every target for coverage; only fuzz executables link the libFuzzer driver.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

function(slipway_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Werror)
  # g++ 12 at -O3 reports -Wrestrict inside libstdc++'s own `const char* + std::string&&`
  # (a known g++ 12 false positive, GCC bug 105329 and kin), not a fault in our code, so it stays
  # a warning there (still shown) instead of failing release builds.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-error=restrict)
  endif()
endfunction()

# slipway_unit_test(NAME src... [LIBS lib...] [LABELS label...])
function(slipway_unit_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  slipway_warnings(${name})
  target_link_libraries(${name} PRIVATE slipway::core GTest::gtest GTest::gtest_main ${ARG_LIBS})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()
