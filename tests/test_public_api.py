"""The curated public API stays complete and importable."""

from __future__ import annotations

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
