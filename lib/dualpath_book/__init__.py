"""dualpath_book: what builds the book around the ``dualpath`` method package.

It imports ``dualpath``, never the reverse. ``page`` is what a notebook calls (its parameters,
settings table and glue helpers) with ``analysis``, ``plots`` and ``ablation_report``; ``pipeline``
executes the notebooks and keys their outputs; ``sweep`` and ``ablation`` run the resumable grids;
``htmlcheck`` and ``mathjax`` check and serve the built site; ``layout`` names the repository's folders.
"""
