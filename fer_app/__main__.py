"""``python -m fer_app [--dev]``: the same as ``fer-app``."""

from fer_app.server import main

if __name__ == "__main__":
    main()
