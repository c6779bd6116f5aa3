"""The API's OpenAPI schema as committed in ``packages/health-api/openapi.json``.

Regenerate after changing a route or a model (a test fails while the two disagree):

    python -m asset_post_process.health_api.openapi > packages/health-api/openapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from asset_post_process.health_api.app import create_app


def openapi_schema() -> dict[str, Any]:
    """The schema the app serves at ``/openapi.json``."""
    return create_app().openapi()


def openapi_text() -> str:
    """The schema as committed: indented JSON with sorted keys and a final newline."""
    return json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Print the schema."""
    sys.stdout.write(openapi_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
