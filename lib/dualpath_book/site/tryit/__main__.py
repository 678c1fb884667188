"""python -m dualpath_book.site.tryit BOOK_ROOT [PAGE_DATA]: stage the "Try it" page's files."""
import sys

from . import PAGE_DATA, stage

if __name__ == "__main__":
    print(stage(sys.argv[1] if len(sys.argv) > 1 else ".", sys.argv[2] if len(sys.argv) > 2 else PAGE_DATA))
