"""Serve an exported ONNX model over HTTP: the standard library's http.server, Pillow, numpy and onnxruntime only
(no torch, no ignite_app), as a service would run it.

    python scripts/export.py --checkpoint runs/<run>/checkpoints/best_model.pt --output model.onnx
    python examples/serve_onnx.py model.onnx --port 8000
    curl --data-binary @photo.jpg http://127.0.0.1:8000/predict

``POST /predict`` takes the raw image file (PNG, JPEG, ...) as the request body and answers JSON:
``{"labels": ["cat", "dog", ...], "confidences": [0.93, 0.05, ...]}``, the ``--top-k`` best classes first, with
their softmax probabilities. ``GET /`` answers the model's metadata. A body that is not an image gets status 400
with ``{"error": ...}``. Everything the service needs comes from the model file's metadata: the class names, the
input size and channels, and how training prepared an image (decode, EXIF orientation, colour, the short side
resized, bilinear, then the centre crop); the model normalises the uint8 pixels itself. Pillow's resize and
torchvision's (which training uses) may differ by a level here and there, so the probabilities agree with
``scripts/predict.py``'s to about three decimals.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MAX_BODY = 32 * 2**20  # bytes: larger uploads are refused (413)


class OnnxClassifier:
    """An exported model and the image preparation its metadata describes."""

    def __init__(self, path: str) -> None:
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.metadata = json.loads(self.session.get_modelmeta().custom_metadata_map["ignite_app"])
        self.classes = self.metadata["classes"]
        _, self.channels, self.height, self.width = self.metadata["input"]["shape"]
        self.short_side = self.metadata["preprocessing"]["resize_short_side"]
        self.input_name = self.session.get_inputs()[0].name

    def pixels(self, data: bytes) -> np.ndarray:
        """The image file's bytes as the model's input: uint8 (1, C, H, W), prepared as in training."""
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            if self.channels == 3 and image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            image = image.convert("L" if self.channels == 1 else "RGB")
            image = self.view(image)
            array = np.asarray(image, dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # (C, H, W)
        return np.ascontiguousarray(array[None])

    def view(self, image: Image.Image) -> Image.Image:
        """The validation view: the short side resized to ``resize_short_side`` (the long side truncated, as
        torchvision's ``Resize``), then the centre (height, width) crop (rounded as torchvision's ``CenterCrop``)."""
        width, height = image.size
        if min(width, height) != self.short_side:
            short = self.short_side
            size = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
            image = image.resize(size, Image.Resampling.BILINEAR)
        width, height = image.size
        left, top = int(round((width - self.width) / 2)), int(round((height - self.height) / 2))
        return image.crop((left, top, left + self.width, top + self.height))

    def predict(self, data: bytes, top_k: int) -> dict[str, list]:
        logits = self.session.run(None, {self.input_name: self.pixels(data)})[0][0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = np.argsort(-probabilities, kind="stable")[:top_k]
        return {"labels": [self.classes[i] for i in best], "confidences": [float(probabilities[i]) for i in best]}


def make_handler(model: OnnxClassifier, top_k: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            if self.path == "/":
                self._answer(200, model.metadata)
            else:
                self._answer(404, {"error": f"no such path {self.path!r}; POST an image to /predict"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                self._answer(404, {"error": f"no such path {self.path!r}; POST an image to /predict"})
                return
            length = int(self.headers.get("Content-Length", 0))
            if not 0 < length <= MAX_BODY:
                self._answer(413 if length else 400, {"error": f"send one image file of 1 to {MAX_BODY} bytes as "
                                                               f"the request body, got {length} bytes"})
                return
            try:
                answer = model.predict(self.rfile.read(length), top_k)
            except (OSError, ValueError, Image.DecompressionBombError) as e:  # what Pillow raises on a bad image
                self._answer(400, {"error": f"the body is not an image Pillow can decode: {e}"})
                return
            self._answer(200, answer)

        def log_message(self, format: str, *args: object) -> None:  # one line per request, on stderr
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the exported FILE.onnx (scripts/export.py)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--top-k", type=int, default=3, help="classes per answer, best first")
    args = parser.parse_args(argv)
    model = OnnxClassifier(args.model)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model, min(args.top_k, len(model.classes))))
    print(f"serving {args.model} ({len(model.classes)} classes) on http://{args.host}:{server.server_port}/predict",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
