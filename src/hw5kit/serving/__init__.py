"""The serving core shared by every backend: models, images, safe fetching, HTTP."""
