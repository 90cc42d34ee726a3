#!/usr/bin/env bash
# Installs libslipway from a build tree into a temporary prefix and builds the C test program
# against the installed files twice, with find_package(slipway) and with pkg-config, then runs both.
# Usage: install_test.sh BUILD_DIR TEST_SRC_DIR C_COMPILER CMAKE GENERATOR [SANITIZER_FLAGS]
# SANITIZER_FLAGS (e.g. -fsanitize=address,undefined) go to the consumer's compile and link when
# the library was built with them.
set -euo pipefail
build=$1 src=$2 cc=$3 cmake=$4 generator=$5 san=${6:-}
tmp=$(mktemp -d /tmp/slipway-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Only the library's own files are installed, so this finishes in seconds.
"$cmake" --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
lib=$(find "$tmp/prefix" -name 'libslipway.so.0*' -type f | head -n1)
[[ -n $lib ]] || { echo "install_test: libslipway.so.0 not installed" >&2; exit 1; }
libdir=$(dirname "$lib") # lib, or lib/<multiarch> for a /usr prefix
for f in "$tmp/prefix/include/slipway.h" "$tmp/prefix/include/slipway/embed/network.hpp" \
  "$libdir/libslipway.so" "$libdir/cmake/slipway/slipwayConfig.cmake" \
  "$libdir/cmake/slipway/slipwayConfigVersion.cmake" "$libdir/pkgconfig/slipway.pc"; do
  [[ -e $f ]] || { echo "install_test: ${f#"$tmp/prefix/"} not installed" >&2; exit 1; }
done
# The C ABI is exported; the libraries linked into it stay hidden.
exported=$(nm -DC --defined-only "$lib")
grep -Eq ' T slipway_network_new(@@SLIPWAY_0)?$' <<<"$exported" ||
  { echo "install_test: slipway_network_new not exported" >&2; exit 1; }
if grep -Eq ' [A-Za-z] (boost|tl|spdlog|fmt)::' <<<"$exported"; then
  echo "install_test: third-party symbols exported from $lib" >&2
  exit 1
fi

# 1. CMake: find_package(slipway) in a project of its own.
"$cmake" -S "$src/consumer" -B "$tmp/cmake-build" -G "$generator" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" \
  >"$tmp/configure.log" ||
  { cat "$tmp/configure.log" >&2; exit 1; }
"$cmake" --build "$tmp/cmake-build" >"$tmp/build.log" || { cat "$tmp/build.log" >&2; exit 1; }
"$tmp/cmake-build/c_api_test"

# 2. pkg-config.
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046 # the flags are meant to split
# shellcheck disable=SC2086 # $san is empty or one flag
"$cc" -std=c99 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L $san -o "$tmp/c_api_test_pc" \
  "$src/c_api_test.c" $(pkg-config --cflags --libs slipway)
LD_LIBRARY_PATH=$libdir "$tmp/c_api_test_pc"
echo "install_test: both consumers built and passed"
