"""The book's figures, one module per family: ``architecture`` (the network drawn from a Config),
``curves`` (training logs), ``data`` (notebook 01), ``results`` (ours among the published rows),
``retrieval`` (qualitative results, word importance, embedding projections), ``ablations`` (the
ablation chapter: each family's arms with every seed, the length of Stage I, the losses over budgets).

Every plotting function returns a :class:`matplotlib.figure.Figure` built with the object-oriented
API (no ``pyplot`` state, no ``plt.show``), so it works under any backend, including ``Agg`` in a
headless book build. Styling comes from seaborn themes applied inside each call (``style.theme``),
never globally.
"""
