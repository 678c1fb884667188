import sys

from .cli import main

if __name__ == "__main__":   # the local cluster's workers import this module again; they must not run it
    sys.exit(main())
