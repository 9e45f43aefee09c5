"""Hugging Face Space entry point: ``python app.py [--dev]`` serves the app (:mod:`app_ui.server`)."""

from app_ui.server import main

if __name__ == "__main__":
    main()
