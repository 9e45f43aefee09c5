# Hugging Face Space (Docker SDK). The same install script as `make` (scripts/install.sh), in its slim shape:
# the pinned inference + app requirements without the torch stack (`pip install 'fer-core[app]'`'s shape). The
# Space serves on ONNX Runtime (MTCNN, FaceMesh and the classifier); torch is never installed.
FROM python:3.11-slim
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860
WORKDIR /home/user/app
COPY --chown=user requirements.txt pyproject.toml ./
COPY --chown=user scripts/install.sh scripts/slim_requirements.py scripts/
# fails the build if anything pulled torch in
RUN python -m venv .venv && scripts/install.sh --slim \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None and 'torch installed')"
COPY --chown=user . .
EXPOSE 7860
CMD ["python", "-m", "fer_app"]
