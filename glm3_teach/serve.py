"""An OpenAI-compatible chat server for any course checkpoint: streaming, tool calls, batching.

Taught in lesson 12 (部署 Serving). Run it with::

    python -m glm3_teach.serve --model data/checkpoints/chat [--host 127.0.0.1] [--port 8000] [--api-key KEY]
    python -m glm3_teach.serve --model data/checkpoints/chat_lora --base data/checkpoints/base --seq-length 1536
    python -m glm3_teach.serve --model "$GLM3_CHATGLM3_PATH" --dtype bfloat16        # the real ChatGLM3-6B

``--model`` is any checkpoint folder ``load_pretrained`` reads (a quantized one too), a LoRA
adapter or a P-Tuning v2 prefix (with ``--base``, the model it adapts; LoRA is merged into the
weights for speed), or a real ChatGLM3-6B folder (its ``tokenizer.model`` beside the weights).

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``,
``POST /v1/chat/completions`` (the Chat Completions request and response shapes, streamed as
server-sent events with ``"stream": true``), ``GET /v1/tools`` and ``POST /v1/tools/call``
(the tea shop's tools, which the chat page offers and asks the server to run) and the chat
page itself at ``/``. There is no ``/docs``: FastAPI's pages load their scripts from a CDN.

The request and reply mapping between OpenAI's format and ChatGLM3's is in
``glm3_teach.openai_format``; the batched generation worker in ``glm3_teach.batching``. This
module joins them: each request becomes a ``Generation`` (a job of the engine plus a
``ReplyParser``), answered whole (``complete``) or as SSE chunks (``stream_chunks``): every
chunk has the same ``id``, ``created`` and ``model``; the first delta carries the role; text
arrives as it is decoded (whole characters only, via the tokenizer's ``StreamDecoder``); a
tool call arrives as ``delta.tool_calls`` with ``index``, ``id``, ``type`` and ``name`` first,
then ``arguments`` fragments; the last choice chunk has the ``finish_reason`` (``stop``,
``length`` or ``tool_calls``); with ``stream_options.include_usage`` a final chunk carries the
real token counts; then ``data: [DONE]``. A client that disconnects cancels its job.

**Request fields.** Used: ``model``, ``messages`` (roles system/developer, user, assistant with
optional ``tool_calls``, tool with ``tool_call_id``; content a string or text parts),
``temperature`` (0 = greedy, default ChatGLM3's 0.8), ``top_p`` (default 0.8), ``max_tokens`` /
``max_completion_tokens`` (default: the rest of the context), ``stop`` (up to 4 strings),
``seed``, ``stream``, ``stream_options.include_usage``, ``tools``, ``tool_choice``
(``"auto"``, ``"none"``). Refused with a 400: ``n`` other than 1, ``logprobs``,
``response_format`` other than text, other ``tool_choice`` values, non-text content.
Ignored: everything else (``user``, ``frequency_penalty``, ``parallel_tool_calls``, ...).

**Errors** have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for a
bad request (``context_length_exceeded`` when prompt + ``max_tokens`` do not fit), 401 for a
missing or wrong API key (when ``--api-key`` is set), 404 for an unknown model or path, 413
for a body over the limit, 429 when the queue is full. ``Limits`` bounds messages, characters
and waiting requests so that one client cannot exhaust memory. Nothing a client sends is ever
executed; the server binds 127.0.0.1 unless told otherwise.

What it leaves out: the Completions and Embeddings endpoints, TLS (put a reverse proxy in
front), rate limiting per key, and more than one model per server.
"""

import argparse
import asyncio
import hmac
import json
import secrets
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator

from glm3_teach.batching import BatchedEngine, GenerationRequest
from glm3_teach.generate import stop_token_ids
from glm3_teach.openai_format import (APIError, ChatRequest, Limits, ReplyParser, parse_chat_request, sse,
                                      tool_call_object)
from glm3_teach.tools import SHOP_TOOLS, call_tool, tool_schema


# --- running one request through the engine -----------------------------------------------------------
class Generation:
    """One request's generation as an async stream of ``ReplyParser`` events plus the finish reason."""

    def __init__(self, engine: Any, tokenizer: Any, request: ChatRequest, prompt_ids: list[int], max_tokens: int):
        self.engine, self.tokenizer, self.request = engine, tokenizer, request
        self.prompt_tokens, self.completion_tokens = len(prompt_ids), 0
        self.finish_reason = "stop"
        self.parser = ReplyParser([tool["name"] for tool in request.tools], request.stop)
        self._events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        greedy = request.temperature == 0 or request.top_p == 0
        job_request = GenerationRequest(prompt_ids, max_tokens, temperature=0.0 if greedy else request.temperature,
                                        top_p=request.top_p, seed=request.seed, stop_ids=tuple(stop_token_ids(tokenizer)))
        self.job = engine.submit(job_request, lambda event: loop.call_soon_threadsafe(self._events.put_nowait, event))

    async def events(self) -> AsyncIterator[tuple[str, str]]:
        """Parser events as the tokens arrive; cancels the job if the consumer goes away."""
        decoder = self.tokenizer.stream_decoder()
        try:
            while True:
                event = await self._events.get()
                if event[0] == "token":
                    for item in self.parser.push(decoder.push(event[1])):
                        yield item
                    if self.parser.stopped:
                        self.job.cancel()
                elif event[0] == "end":
                    self.completion_tokens = event[2]
                    self._set_finish(event[1])
                    for item in self.parser.finish():
                        yield item
                    return
                else:
                    raise APIError(500, event[1], type="server_error", code="generation_failed")
        finally:
            self.job.cancel()

    def _set_finish(self, reason: str) -> None:
        if self.parser.mode == "call" and reason == "stop":
            self.finish_reason = "tool_calls"
        elif self.parser.stopped or reason == "cancelled":
            self.finish_reason = "stop"
        else:
            self.finish_reason = reason

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


async def complete(generation: Generation, head: dict) -> dict:
    """The whole ``chat.completion`` object of a non-streamed request."""
    text, call = [], None
    async for kind, value in generation.events():
        if kind == "text":
            text.append(value)
        elif kind == "call":
            call = tool_call_object(value)
        elif kind == "arguments":
            call["function"]["arguments"] = value
    message = {"role": "assistant", "content": None if call else "".join(text), "refusal": None}
    if call:
        message["tool_calls"] = [call]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": generation.finish_reason}
    return {**head, "object": "chat.completion", "choices": [choice], "usage": generation.usage()}


async def stream_chunks(generation: Generation, head: dict) -> AsyncIterator[str]:
    """The SSE lines of a streamed request: role chunk, deltas, finish chunk, optional usage chunk, [DONE]."""
    usage = {"usage": None} if generation.request.include_usage else {}

    def chunk(delta: dict, finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "object": "chat.completion.chunk", "choices": [choice], **usage})

    started = False
    try:
        async for kind, value in generation.events():
            if kind == "text":
                if not started:
                    yield chunk({"role": "assistant", "content": "", "refusal": None})
                yield chunk({"content": value})
            elif kind == "call":
                call = {"index": 0, **tool_call_object(value)}
                yield chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]})
            elif kind == "arguments":
                for start in range(0, len(value), 16):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": value[start:start + 16]}}]})
            started = True
        if not started:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
        yield chunk({}, generation.finish_reason)
        if generation.request.include_usage:
            yield sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": generation.usage()})
    except APIError as error:
        yield sse(error.body())
    yield sse("[DONE]")


# --- the HTTP application ------------------------------------------------------------------------------
def _static_dir() -> Path:
    return Path(str(resources.files("glm3_teach") / "static"))


def create_app(engine: Any, tokenizer: Any, model_name: str, *, api_key: str | None = None,
               limits: Limits = Limits(), shop_tools: list = SHOP_TOOLS) -> Any:
    """The FastAPI app serving ``engine`` (a ``BatchedEngine`` or anything with its interface) as ``model_name``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    app = FastAPI(title="glm3-teach", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else "request failed"
        return JSONResponse(APIError(error.status_code, f"{detail}: {request.method} {request.url.path}").body(),
                            status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(APIError(400, str(error)).body(), status_code=400)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise APIError(401, "missing or incorrect API key: send the header 'Authorization: Bearer <key>' with the "
                           "key the server was started with", code="invalid_api_key")

    async def read_json(request: Request) -> Any:
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            raise APIError(413, f"the request body is {len(body)} bytes, more than the {limits.max_body_bytes} "
                           f"this server takes", code="request_too_large")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"the body is not valid JSON ({error}); send a JSON object with "
                           f"Content-Type: application/json") from None

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "glm3-teach"}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "pending": engine.pending()}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict:
        check_key(request)
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist; this server serves '{model_name}'",
                           "model", "model_not_found")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        check_key(request)
        body = await read_json(request)
        if isinstance(body, dict) and body.get("model") != model_name:
            raise APIError(404, f"The model {body.get('model')!r} does not exist; this server serves "
                           f"'{model_name}' (see GET /v1/models)", "model", "model_not_found")
        chat = parse_chat_request(body, limits)
        generation = start_generation(chat)
        head = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()), "model": model_name,
                "system_fingerprint": None}
        if chat.stream:
            return StreamingResponse(stream_chunks(generation, head), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await complete_unless_gone(generation, head, request)

    def start_generation(chat: ChatRequest) -> Generation:
        try:
            prompt_ids = tokenizer.build_chat_input(chat.query, chat.history, role=chat.role)
        except (TypeError, ValueError) as error:
            raise APIError(400, f"the messages cannot be laid out as a ChatGLM3 conversation: {error}",
                           "messages") from None
        room = engine.seq_length - len(prompt_ids)
        max_tokens = chat.max_tokens if chat.max_tokens is not None else room
        if max_tokens > room or room < 1:
            raise APIError(400, f"This model's maximum context length is {engine.seq_length} tokens. However, you "
                           f"requested {len(prompt_ids) + max(max_tokens, 1)} tokens ({len(prompt_ids)} in the "
                           f"messages, {max(max_tokens, 1)} in the completion). Please reduce the length of the "
                           f"messages or the completion.", "messages", "context_length_exceeded")
        if engine.pending() >= limits.max_pending:
            raise APIError(429, f"the server is busy ({engine.pending()} requests queued); try again shortly",
                           code="rate_limit_exceeded", type="rate_limit_error")
        return Generation(engine, tokenizer, chat, prompt_ids, max_tokens)

    async def complete_unless_gone(generation: Generation, head: dict, request: Request) -> Any:
        task = asyncio.ensure_future(complete(generation, head))
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and await _disconnected(request):
                generation.job.cancel()
                task.cancel()
                return JSONResponse(APIError(499, "the client closed the request").body(), status_code=499)
        return JSONResponse(task.result())

    @app.get("/v1/tools")
    async def list_tools(request: Request) -> dict:
        """The shop's tools in OpenAI's ``tools`` format (the chat page offers them to the model)."""
        check_key(request)
        return {"object": "list", "data": [{"type": "function", "function": tool_schema(fn)} for fn in shop_tools]}

    @app.post("/v1/tools/call")
    async def run_tool(request: Request) -> dict:
        """Run one of the shop's tools for the chat page: ``{"name", "arguments": JSON text}`` -> the observation."""
        check_key(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise APIError(400, "send {'name': tool name, 'arguments': JSON object as text}", "name")
        try:
            arguments = json.loads(body.get("arguments") or "{}")
        except (TypeError, json.JSONDecodeError):
            arguments = body.get("arguments")          # call_tool answers with an error observation
        result = call_tool(body["name"], arguments, shop_tools)
        return {"name": body["name"], "content": json.dumps(result, ensure_ascii=False)}

    @app.get("/")
    async def index() -> Any:
        return FileResponse(_static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    app.state.engine = engine
    return app


async def _disconnected(request: Any) -> bool:
    try:
        return await asyncio.wait_for(request.is_disconnected(), timeout=0.01)
    except asyncio.TimeoutError:
        return False


# --- loading a model and the command line -------------------------------------------------------------
def load_model(path: str | Path, base: str | Path | None = None, device: str | None = None,
               dtype: str = "auto", seq_length: int | None = None) -> Any:
    """The model in ``path``: a checkpoint folder, a LoRA adapter or a P-Tuning v2 prefix (on ``base``).

    ``dtype="auto"`` loads float32 on the CPU (CPU matmuls in bf16/fp16 are several times slower
    for a batch) and the checkpoint's own dtype on a GPU; or name one (``"bfloat16"`` halves the
    memory of a large model on the CPU). ``seq_length`` raises the context (RoPE tables are
    built for any length; an adapter trained on longer dialogues than its base needs it).
    """
    import torch

    from glm3_teach import load_pretrained, peft
    from glm3_teach.device import pick_device
    from glm3_teach.model import ChatGLMConfig

    path, device = Path(path), pick_device(device)
    dtype = (torch.float32 if device.type == "cpu" else None) if dtype == "auto" else dtype
    is_lora = (path / peft.ADAPTER_CONFIG_NAME).is_file()
    saved = None if is_lora else ChatGLMConfig.from_json(path)
    if is_lora or saved.pre_seq_len:
        model = load_pretrained(base or peft.adapter_base(path), dtype=dtype, device=device)
        model = peft.merge_lora(peft.load_lora(model, path)) if is_lora else peft.load_ptuning(model, path)
        seq_length = seq_length or (None if is_lora else saved.seq_length)
    else:
        model = load_pretrained(path, dtype=dtype, device=device)
    if seq_length:
        model.config.seq_length = seq_length
    return model.eval()


def load_engine(path: str | Path, max_batch_size: int = 16, device: str | None = None, dtype: str = "auto",
                base: str | Path | None = None, seq_length: int | None = None) -> tuple[Any, Any]:
    """``(BatchedEngine, tokenizer)`` for the model in ``path`` (see ``load_model``); the tokenizer beside it."""
    from glm3_teach import load_tokenizer

    folders = [Path(path)] + ([Path(base)] if base else [])
    with_tokenizer = [f for f in folders if any((f / name).exists() for name in ("tokenizer.json", "tokenizer.model"))]
    tokenizer = load_tokenizer(with_tokenizer[0] if with_tokenizer else None)
    model = load_model(path, base, device, dtype, seq_length)
    return BatchedEngine(model, max_batch_size=max_batch_size), tokenizer


def main(argv: list[str] | None = None) -> int:
    """``python -m glm3_teach.serve --model FOLDER``: serve a checkpoint on 127.0.0.1 until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.serve", description=main.__doc__)
    parser.add_argument("--model", required=True, help="checkpoint folder, e.g. data/checkpoints/chat, or an adapter")
    parser.add_argument("--base", default=None, help="the model an adapter (LoRA, P-Tuning v2) adapts")
    parser.add_argument("--seq-length", type=int, default=None, help="raise the context length (tokens)")
    parser.add_argument("--name", default=None, help="model id clients ask for (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="model dtype (auto: float32 on the CPU, the checkpoint's dtype on a GPU)")
    args = parser.parse_args(argv)
    if not Path(args.model).is_dir():
        print(f"error: --model {args.model} is not a folder; pass a checkpoint folder such as data/checkpoints/chat",
              file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print("error: serving needs fastapi and uvicorn: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    try:
        engine, tokenizer = load_engine(args.model, args.max_batch_size, args.device, args.dtype, args.base,
                                        args.seq_length)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot load {args.model}: {error}", file=sys.stderr)
        return 2
    name = args.name or Path(args.model).resolve().name
    app = create_app(engine, tokenizer, name, api_key=args.api_key)
    print(f"serving {name} on http://{args.host}:{args.port} (chat page at /, API at /v1)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
