"""aiohttp server plumbing shared by both listeners (the API and the Docker-compatible endpoint)."""
