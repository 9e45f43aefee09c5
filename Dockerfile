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
# CPU-only torch/torchvision wheels: a Space has no GPU, and PyPI's default build carries ~3 GB of CUDA
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv .venv && TORCH_INDEX_URL=$TORCH_INDEX_URL scripts/install.sh
COPY --chown=user . .
EXPOSE 7860
CMD ["python", "-m", "fer_app"]
