"""mkdocs hook: drop the Sphinx roles of the docstrings from the rendered API pages.

The docstrings name objects as ``:class:`Predictor```, which Sphinx turns into a link and
mkdocstrings prints as ":class:" before the name; the name alone (in code type) reads better.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """mkdocs hook: ``:class:<code>X</code>`` -> ``<code>X</code>``."""
    return ROLE.sub("", html)
