FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . .
# CPU torch for the student judge; a GPU image installs a CUDA build of torch before this line.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e ".[ml]"
RUN SECRET_KEY=build-only-secret-key-build-only-secret-key-0123456789 SAGE_DATA_DIR=/tmp/build STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --no-input -v0
RUN useradd --create-home sage && mkdir -p /data && chown sage /data
USER sage
EXPOSE 8000
