#!/usr/bin/env python3
"""Writes the uncompressed ELF kernel (vmlinux) found inside a bzImage.

QEMU boots an ELF vmlinux through its PVH entry point, skipping the decompressor, which
under TCG costs seconds. The bzImage's payload is an xz, gzip or zstd stream somewhere
after the setup code: try each magic in turn until one decompresses into an ELF image.
"""
import gzip
import lzma
import os
import shutil
import subprocess
import sys
import zlib

ELF_MAGIC = b"\x7fELF"


def xz(data):
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


def gz(data):
    # raw deflate after the 10-byte header; trailing bytes after the stream are fine
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def zstd(data):
    if not shutil.which("zstd"):
        raise ValueError("zstd is not installed")
    out = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
    return out.stdout  # a trailer after the frame makes zstd complain; the output stands


FORMATS = [(b"\xfd7zXZ\x00", xz), (b"\x1f\x8b\x08", gz), (b"\x28\xb5\x2f\xfd", zstd)]


def extract(image):
    for magic, decompress in FORMATS:
        pos = image.find(magic)
        while pos >= 0:
            try:
                out = decompress(image[pos:])
            except (lzma.LZMAError, zlib.error, EOFError, ValueError, gzip.BadGzipFile):
                out = b""
            if out.startswith(ELF_MAGIC):
                return out
            pos = image.find(magic, pos + 1)
    return None


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract-vmlinux.py BZIMAGE OUTPUT")
    with open(sys.argv[1], "rb") as f:
        image = f.read()
    vmlinux = extract(image)
    if vmlinux is None:
        sys.exit(f"extract-vmlinux: no xz, gzip or zstd payload with an ELF kernel in {sys.argv[1]}")
    with open(sys.argv[2] + ".tmp", "wb") as f:
        f.write(vmlinux)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])


if __name__ == "__main__":
    main()
