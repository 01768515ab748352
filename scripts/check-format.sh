#!/bin/sh
# Checks that every C file under src/ and tests/ is formatted as .clang-format says.
# Changes nothing; exits non-zero and names the lines on any difference.
# To reformat instead: clang-format -i $(git ls-files 'src/*.[ch]' 'tests/*.[ch]')
# CLANG_FORMAT selects the binary (default clang-format; Debian 12's is version 14).
set -eu
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null; then
    echo "check-format: $CLANG_FORMAT not found (scripts/install-deps.sh installs it)" >&2
    exit 2
fi
files=$(find src tests -name '*.[ch]' -type f | sort)
[ -n "$files" ] || exit 0
# shellcheck disable=SC2086
if ! "$CLANG_FORMAT" --style=file --dry-run -Werror $files; then
    echo "check-format: the files above differ from .clang-format" >&2
    exit 1
fi
