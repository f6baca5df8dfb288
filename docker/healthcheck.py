"""Docker HEALTHCHECK of the boxguard images: healthy when GET /readyz answers 200.

Standard library only, so it runs with any Python in the image. The port follows BOXGUARD_PORT.
"""

import os
import sys
import urllib.request

port = os.environ.get("BOXGUARD_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means "not ready"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
