# gunicorn reads this file when started from this folder; the settings live in the package.
from hw5kit.serving.gunicorn_conf import *  # noqa: F403
