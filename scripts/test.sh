#!/bin/sh
# Builds dispenser from scratch in a build dir and runs the whole test suite
# (unit + integration). BUILD_DIR and MESON_ARGS select a variant, e.g.
#   BUILD_DIR=build-asan MESON_ARGS=-Db_sanitize=address,undefined scripts/test.sh
set -eu
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-test}
rm -rf "$BUILD_DIR"
# shellcheck disable=SC2086
meson setup "$BUILD_DIR" ${MESON_ARGS:-} >/dev/null
ninja -C "$BUILD_DIR"
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2
