"""The curated public API stays complete and importable."""

from __future__ import annotations

import subprocess
import sys

import pipeline


class TestPublicApi:
    def test_every_name_in_all_is_importable(self) -> None:
        """Each name listed in `pipeline.__all__` exists on the package."""
        missing = [name for name in pipeline.__all__ if not hasattr(pipeline, name)]
        assert missing == []

    def test_all_lists_every_public_name_imported(self) -> None:
        """No public name is re-exported without being listed in `__all__`."""
        public = {
            name
            for name, value in vars(pipeline).items()
            if not name.startswith("_") and getattr(value, "__module__", "").startswith("pipeline.")
        }
        assert public <= set(pipeline.__all__)

    def test_light_modules_do_not_load_the_heavy_ones(self) -> None:
        """`import pipeline.models` (and the review queue, which a review UI imports) loads
        neither the OpenAI SDK nor scipy: the public names load on first use."""
        code = (
            "import sys, pipeline.models, workers.review_queue; "
            "print(sorted(m for m in ('openai', 'instructor', 'scipy') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == "[]"
        assert pipeline.Moderator.__module__ == "pipeline.runner"  # and on use, they load
