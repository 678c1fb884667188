"""The built site's checks and assets: ``htmlcheck`` (every page in headless Chromium) and
``mathjax`` (a local MathJax). Nothing here runs in a notebook's kernel, so editing it re-executes
no page."""
