"""The ``didmark`` console script: runs the command line binary installed with the package."""

import os
import sys


def main():
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "didmark")
    if not os.access(exe, os.X_OK):
        sys.stderr.write("didmark: the command line tool was not built into this installation "
                         "(reinstall without -Ccmake.define.DIDMARK_BUILD_APPS=OFF)\n")
        return 2
    # exec: the binary's exit codes, signals and streams are the command's own.
    os.execv(exe, [exe, *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
