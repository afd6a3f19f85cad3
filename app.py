"""Run the web chat: ``python app.py``, then open http://127.0.0.1:7860.

The work is in ``qa.app.web`` (settings, serving) and ``qa.app.ui`` (the page); this
file only launches it. Environment: see ``qa/app/web.py`` or the README.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from qa.app.web import main  # noqa: E402 - the environment first, so no library phones home on import

if __name__ == "__main__":
    sys.exit(main())
