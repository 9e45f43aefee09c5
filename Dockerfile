# Hugging Face Space (Docker SDK). The same install script as `make` (scripts/install.sh), so CI's
# `make test` runs exactly these steps.
FROM python:3.11-slim
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860
WORKDIR /home/user/app
COPY --chown=user requirements.txt ./
COPY --chown=user scripts/install.sh scripts/
RUN python -m venv .venv && scripts/install.sh
COPY --chown=user . .
EXPOSE 7860
CMD ["python", "-m", "app_ui"]
