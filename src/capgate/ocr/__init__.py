"""Local captcha OCR: a small CRNN run by onnxruntime (engine) and seeded captchas (synth)."""
