"""dualpath_book: what builds the book around the ``dualpath`` method package.

It imports ``dualpath``, never the reverse. ``page`` is what a notebook calls (its parameters,
settings table and glue helpers), with ``analysis`` (read-outs of a trained run), ``data_tables``,
``prose`` (sentences from a config), ``literature``, ``figures`` and ``ablation_report``;
``pipeline`` executes the notebooks (through ``notebook_run``) and keys their outputs, after
``assets`` wrote what the prose pages include; ``sweep`` and ``ablation`` run the resumable grids;
``book_runs``, ``readme`` and ``sync`` keep the tables of our runs and what is written from them;
``site`` (htmlcheck, mathjax) checks and serves the built site; ``layout`` names the repository's
folders.
"""
