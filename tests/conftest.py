"""Shared test settings: no progress bars; a small torch thread pool so parallel jobs don't thrash."""
import os

os.environ.setdefault("DUALPATH_PROGRESS", "0")
