#!/usr/bin/python3
"""The resident Python interpreter of the code-sandbox benchmark template.

Started once per qube by /etc/dispenser/startup.d/50-pysandbox, before the qube is
declared ready. It imports what a code sandbox typically needs up front, then serves
/run/pysandbox/sock: per connection a forked child (the warm imports are shared, one
request cannot disturb the next) reads Python source until EOF, runs it and sends back
what it printed, or the traceback.
"""
import contextlib
import io
import os
import signal
import socket
import sys
import traceback

# The start-up work a cold disposable pays and a preloaded one has already done.
import collections, csv, datetime, decimal, fractions, json, math, random, re  # noqa: E401,F401
import statistics, string, textwrap, itertools, functools, hashlib, base64  # noqa: E401,F401

SOCK_DIR = "/run/pysandbox"
SOCK = SOCK_DIR + "/sock"


def serve_one(conn):
    code = b"".join(iter(lambda: conn.recv(65536), b""))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(code, "<sandbox>", "exec"), {"__name__": "__main__"})
    except BaseException:  # the user's code may raise anything, SystemExit included
        out.write(traceback.format_exc())
    conn.sendall(out.getvalue().encode())


def main():
    os.makedirs(SOCK_DIR, mode=0o755, exist_ok=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    srv = socket.socket(socket.AF_UNIX)
    # bound under a temporary name and renamed once listening: the start-up script waits
    # for the final name, so the qube is never ready before the interpreter is
    tmp = SOCK + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    srv.bind(tmp)
    os.chmod(tmp, 0o666)  # services run as the qube's user
    srv.listen(64)
    os.rename(tmp, SOCK)
    while True:
        conn, _ = srv.accept()
        if os.fork() == 0:
            srv.close()
            try:
                serve_one(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--once"]:  # what bwrap runs: a cold interpreter, same imports
        exec(compile(sys.stdin.read(), "<sandbox>", "exec"), {"__name__": "__main__"})
    else:
        main()
