#!/usr/bin/env bash
# Builds and runs every native/test/*_test.c as a standalone program under ASan + UBSan.
# A test declares the native/src files it needs on its first line, and optionally the
# libraries to link (after the sources) on its second:
#   // sources: offload.c other.c
#   // libs: -lcrypto -lpthread
# (no node_api.h: these are the addon's pure C parts). Exits non-zero if any test fails to
# build or run. Extra arguments are passed to each test binary.
set -u
cd "$(dirname "$0")/../.." || exit 2

CC=${CC:-gcc}
# -fno-sanitize-recover: a UBSan report fails the run instead of just printing.
CFLAGS=(-std=gnu11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined
  -fno-sanitize-recover=all -fno-omit-frame-pointer -D_GNU_SOURCE -Inative/src)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if ! command -v "$CC" >/dev/null 2>&1; then
  echo "run.sh: $CC not found: the native C tests need a C compiler (apt-get install gcc)" >&2
  exit 2
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/meshd-native-test.XXXXXX") || exit 2
trap 'rm -rf "$out"' EXIT

shopt -s nullglob
tests=(native/test/*_test.c)
if [ ${#tests[@]} -eq 0 ]; then
  echo "run.sh: no native/test/*_test.c files" >&2
  exit 2
fi

failed=()
for t in "${tests[@]}"; do
  name=$(basename "$t" .c)
  first=$(sed -n 1p "$t")
  second=$(sed -n 2p "$t")
  srcs=()
  libs=()
  if [[ $first =~ ^//[[:space:]]*sources:(.*)$ ]]; then
    for s in ${BASH_REMATCH[1]}; do
      srcs+=("native/src/$s")
    done
  fi
  if [[ $second =~ ^//[[:space:]]*libs:(.*)$ ]]; then
    for l in ${BASH_REMATCH[1]}; do
      libs+=("$l")
    done
  fi
  echo "== $name (${srcs[*]:-no sources}${libs[*]:+; ${libs[*]}})"
  if ! "$CC" "${CFLAGS[@]}" -o "$out/$name" "$t" "${srcs[@]}" "${libs[@]}"; then
    echo "FAIL $name: build failed"
    failed+=("$name")
    continue
  fi
  if "$out/$name" "$@"; then
    echo "PASS $name"
  else
    echo "FAIL $name: exit status $?"
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "native tests failed: ${failed[*]}"
  exit 1
fi
echo "native tests passed: ${#tests[@]}"
