"""Hugging Face Space entry point: ``python app.py [--dev]`` serves the app (:mod:`fer_app.server`)."""

from fer_app.server import main

if __name__ == "__main__":
    main()
