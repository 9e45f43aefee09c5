"""``python -m app_ui [--dev]``: the same as ``fer-app``."""

from app_ui.server import main

if __name__ == "__main__":
    main()
