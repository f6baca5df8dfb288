"""Print `name==version` for every distribution this Python has, as a pip constraints file.

docker/Dockerfile installs boxguard into the vLLM image with these constraints, so pip adds only
what the image lacks and fails rather than replace vLLM, torch or anything they depend on.
"""

import importlib.metadata
import re

pins: dict[str, str] = {}
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        # The first one found is the one Python imports; later duplicates are shadowed.
        pins.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
